/** GGUF metadata value types, as numbered in the file format. */
export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/**
 * A metadata value. Numeric arrays come back as typed arrays (a 262,144-entry score table
 * as one Float32Array, not a quarter of a million JS numbers); 64-bit integers come back
 * as numbers when they fit exactly and as bigints otherwise.
 */
export type GGUFValue =
  | number
  | bigint
  | boolean
  | string
  | GGUFArray;

export type GGUFArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GGUFValue[];

/** ggml tensor types (`enum ggml_type`). Only the ones a GGUF may carry are listed. */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
}

/** Values per block and bytes per block of each tensor type (ggml's type traits). */
export interface GGMLTypeInfo {
  readonly name: string;
  readonly blockSize: number;
  readonly typeSize: number;
}

const info = (name: string, blockSize: number, typeSize: number): GGMLTypeInfo => ({ name, blockSize, typeSize });

export const GGML_TYPES: ReadonlyMap<number, GGMLTypeInfo> = new Map([
  [GGMLType.F32, info('F32', 1, 4)],
  [GGMLType.F16, info('F16', 1, 2)],
  [GGMLType.Q4_0, info('Q4_0', 32, 18)],
  [GGMLType.Q4_1, info('Q4_1', 32, 20)],
  [GGMLType.Q5_0, info('Q5_0', 32, 22)],
  [GGMLType.Q5_1, info('Q5_1', 32, 24)],
  [GGMLType.Q8_0, info('Q8_0', 32, 34)],
  [GGMLType.Q8_1, info('Q8_1', 32, 36)],
  [GGMLType.Q2_K, info('Q2_K', 256, 84)],
  [GGMLType.Q3_K, info('Q3_K', 256, 110)],
  [GGMLType.Q4_K, info('Q4_K', 256, 144)],
  [GGMLType.Q5_K, info('Q5_K', 256, 176)],
  [GGMLType.Q6_K, info('Q6_K', 256, 210)],
  [GGMLType.Q8_K, info('Q8_K', 256, 292)],
  [GGMLType.IQ2_XXS, info('IQ2_XXS', 256, 66)],
  [GGMLType.IQ2_XS, info('IQ2_XS', 256, 74)],
  [GGMLType.IQ3_XXS, info('IQ3_XXS', 256, 98)],
  [GGMLType.IQ1_S, info('IQ1_S', 256, 50)],
  [GGMLType.IQ4_NL, info('IQ4_NL', 32, 18)],
  [GGMLType.IQ3_S, info('IQ3_S', 256, 110)],
  [GGMLType.IQ2_S, info('IQ2_S', 256, 82)],
  [GGMLType.IQ4_XS, info('IQ4_XS', 256, 136)],
  [GGMLType.I8, info('I8', 1, 1)],
  [GGMLType.I16, info('I16', 1, 2)],
  [GGMLType.I32, info('I32', 1, 4)],
  [GGMLType.I64, info('I64', 1, 8)],
  [GGMLType.F64, info('F64', 1, 8)],
  [GGMLType.IQ1_M, info('IQ1_M', 256, 56)],
  [GGMLType.BF16, info('BF16', 1, 2)],
  [GGMLType.TQ1_0, info('TQ1_0', 256, 54)],
  [GGMLType.TQ2_0, info('TQ2_0', 256, 66)],
  [GGMLType.MXFP4, info('MXFP4', 32, 17)],
]);

/** Bytes taken by `count` values of `type` stored contiguously (count must be a multiple of the block size). */
export function byteSizeOf(type: GGMLType, count: number): number {
  const t = GGML_TYPES.get(type);
  if (!t) throw new RangeError(`unknown ggml type ${type}`);
  return (count / t.blockSize) * t.typeSize;
}

export function typeName(type: number): string {
  return GGML_TYPES.get(type)?.name ?? `unknown(${type})`;
}

export interface GGUFTensorInfo {
  readonly name: string;
  /** Dimensions in GGUF order: fastest-varying first (a linear layer is [in, out]). */
  readonly dims: readonly number[];
  readonly type: GGMLType;
  /** Absolute byte offset of the tensor's data in the file. */
  readonly offset: number;
  readonly byteSize: number;
  readonly elementCount: number;
}

export interface GGUFFile {
  readonly version: 2 | 3;
  readonly metadata: ReadonlyMap<string, GGUFValue>;
  readonly tensors: readonly GGUFTensorInfo[];
  /** Absolute offset where the tensor data section starts. */
  readonly dataOffset: number;
  readonly alignment: number;
  /** Size of the whole file in bytes. */
  readonly fileSize: number;
}
