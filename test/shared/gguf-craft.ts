// Crafts GGUF bytes by hand, including invalid ones the project's writer would refuse to make:
// the reader's tests need exact control over every field.
import { GGUFValueType } from '../../src/core/gguf/types.js';

export type CraftValue =
  | { type: GGUFValueType.STRING; value: string }
  | { type: GGUFValueType.ARRAY; itemType: GGUFValueType; items: CraftValue[] }
  | { type: Exclude<GGUFValueType, GGUFValueType.STRING | GGUFValueType.ARRAY>; value: number | bigint | boolean };

export interface CraftTensor {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

export interface CraftOptions {
  version?: number;
  magic?: number;
  kvs?: [string, CraftValue][];
  tensors?: CraftTensor[];
  /** Bytes of tensor data appended after the aligned header. */
  dataBytes?: number;
  alignment?: number;
}

class Bytes {
  private parts: number[] = [];
  u8(v: number) { this.parts.push(v & 0xff); }
  u32(v: number) { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); }
  u64(v: number | bigint) {
    let b = BigInt(v);
    for (let i = 0; i < 8; i++) { this.parts.push(Number(b & 0xffn)); b >>= 8n; }
  }
  raw(bytes: Uint8Array) { for (const b of bytes) this.parts.push(b); }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.raw(b); }
  get length() { return this.parts.length; }
  finish() { return Uint8Array.from(this.parts); }
}

function writeValue(out: Bytes, v: CraftValue): void {
  const scratch = new DataView(new ArrayBuffer(8));
  switch (v.type) {
    case GGUFValueType.STRING: out.str(v.value); return;
    case GGUFValueType.ARRAY:
      out.u32(v.itemType);
      out.u64(v.items.length);
      for (const item of v.items) writeValue(out, item);
      return;
    case GGUFValueType.UINT8: case GGUFValueType.INT8: case GGUFValueType.BOOL: out.u8(Number(v.value)); return;
    case GGUFValueType.UINT16: case GGUFValueType.INT16: out.u8(Number(v.value)); out.u8(Number(v.value) >> 8); return;
    case GGUFValueType.UINT32: case GGUFValueType.INT32: out.u32(Number(v.value)); return;
    case GGUFValueType.FLOAT32: scratch.setFloat32(0, Number(v.value), true); out.raw(new Uint8Array(scratch.buffer, 0, 4)); return;
    case GGUFValueType.FLOAT64: scratch.setFloat64(0, Number(v.value), true); out.raw(new Uint8Array(scratch.buffer, 0, 8)); return;
    case GGUFValueType.UINT64: case GGUFValueType.INT64: out.u64(BigInt.asUintN(64, BigInt(v.value))); return;
  }
}

export function craftGGUF(o: CraftOptions = {}): Uint8Array {
  const out = new Bytes();
  out.u32(o.magic ?? 0x46554747);
  out.u32(o.version ?? 3);
  const kvs = o.kvs ?? [];
  const tensors = o.tensors ?? [];
  out.u64(tensors.length);
  out.u64(kvs.length);
  for (const [key, value] of kvs) {
    out.str(key);
    out.u32(value.type);
    writeValue(out, value);
  }
  for (const t of tensors) {
    out.str(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type);
    out.u64(t.offset);
  }
  const alignment = o.alignment ?? 32;
  while (out.length % alignment !== 0) out.u8(0);
  for (let i = 0; i < (o.dataBytes ?? 0); i++) out.u8(i * 7);
  return out.finish();
}

export const str = (value: string): CraftValue => ({ type: GGUFValueType.STRING, value });
export const u32 = (value: number): CraftValue => ({ type: GGUFValueType.UINT32, value });
export const f32 = (value: number): CraftValue => ({ type: GGUFValueType.FLOAT32, value });
export const arr = (itemType: GGUFValueType, items: CraftValue[]): CraftValue => ({ type: GGUFValueType.ARRAY, itemType, items });

/** A small valid file that exercises every metadata type, nested arrays and a few tensors. */
export function sampleGGUF(): Uint8Array {
  const T = GGUFValueType;
  return craftGGUF({
    kvs: [
      ['general.architecture', str('gemma4')],
      ['test.u8', { type: T.UINT8, value: 200 }],
      ['test.i8', { type: T.INT8, value: -5 }],
      ['test.u16', { type: T.UINT16, value: 65000 }],
      ['test.i16', { type: T.INT16, value: -300 }],
      ['test.u32', u32(4000000000)],
      ['test.i32', { type: T.INT32, value: -123456 }],
      ['test.f32', f32(1.5)],
      ['test.bool', { type: T.BOOL, value: true }],
      ['test.u64', { type: T.UINT64, value: 2n ** 60n }],
      ['test.i64', { type: T.INT64, value: -42n }],
      ['test.f64', { type: T.FLOAT64, value: Math.PI }],
      ['test.strings', arr(T.STRING, [str('▁hello'), str(''), str('日本'), str('🦙')])],
      ['test.f32s', arr(T.FLOAT32, [f32(1), f32(-2), f32(0.25)])],
      ['test.bools', arr(T.BOOL, [{ type: T.BOOL, value: true }, { type: T.BOOL, value: false }])],
      ['test.nested', arr(T.ARRAY, [arr(T.UINT32, [u32(1), u32(2)]), arr(T.UINT32, [])])],
      ['general.alignment', u32(64)],
    ],
    tensors: [
      { name: 'a.weight', dims: [32, 2], type: 0, offset: 0 },
      { name: 'b.weight', dims: [64], type: 8, offset: 256 },
    ],
    alignment: 64,
    dataBytes: 256 + 68,
  });
}
