/**
 * Matvec micro-benchmark at E2B shapes (Node + Dawn): times one decode matvec in isolation, many
 * dispatches back to back in one timed compute pass, against the floors around it — an empty
 * dispatch of the same grid and a plain streaming read of the same bytes — with the weights warm
 * in L2 (one copy) or cold (copies rotated past the L2). Candidate kernels are written here first
 * and checked against the production kernel's output before they are timed.
 *
 * Built by bench/rollup.bench.mjs into bench/dist/micro.mjs:  node bench/dist/micro.mjs [--reps 40]
 * With --record it times instead what recording a decode step's dispatches costs on the CPU, and
 * with --int8 the arithmetic rate of f32 vec4 fma against WGSL's dot4I8Packed (what an int8 path
 * for prefill's matmuls could gain). With --q6k it times the Q6_K matvecs at E2B's Q6_K shapes: the
 * generic kernel (8 values a step) against matvec_q6k.forward.wgsl at 8 to 64 lanes a row, and
 * against each candidate kernel file in the folder $Q6K_VARIANTS (bodies as matvec_q6k.forward.wgsl:
 * src/wgsl/matvec_bindings.wgsl is put in front, so they leave out Params and bindings); --shape NAME
 * keeps the shapes whose name holds NAME. With --matmul it times prefill's Q4_K and Q6_K matmuls,
 * f32 against int8 (round_q8 + matmul_int8.forward.wgsl) by the default rule and at 1 to 8 K splits.
 */
import { openDevice } from '../src/core/gpu/device.js';
import { LinearKernels } from '../src/core/gpu/linear.js';
import { GGMLType } from '../src/core/gguf/types.js';
import { dequantize } from '../src/core/quant/dequant.js';
import matvecBindingsSource from '../src/wgsl/matvec_bindings.wgsl';
import matvecQ6kSource from '../src/wgsl/matvec_q6k.forward.wgsl';
import reduceSgSource from '../src/wgsl/matvec_reduce_sg.forward.wgsl';
import geluSource from '../src/wgsl/gelu.wgsl';
import weightsCommonSource from '../src/wgsl/weights/common.wgsl';

const keep: unknown[] = [];
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const REPS = arg('reps', 40);
const log = (s: string) => process.stderr.write(`# ${s}\n`);

const { create, globals } = await import('webgpu');
Object.assign(globalThis, globals);
const gpu = create(['disable-dawn-features=timestamp_quantization']);
keep.push(gpu);
const { device, description } = await openDevice({ gpu, optionalFeatures: ['timestamp-query' as GPUFeatureName], preferredLimits: { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 } });
keep.push(device);
log(description);

const S = GPUBufferUsage.STORAGE;
function storage(bytes: Uint8Array | Float32Array, usage = 0): GPUBuffer {
  const b = device.createBuffer({ size: Math.ceil(bytes.byteLength / 16) * 16, usage: S | GPUBufferUsage.COPY_DST | usage, mappedAtCreation: true });
  new Uint8Array(b.getMappedRange()).set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  b.unmap();
  return b;
}
function uniform(words: number[]): GPUBuffer {
  const b = device.createBuffer({ size: 16 * Math.ceil(words.length / 4), usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
  new Uint32Array(b.getMappedRange()).set(words);
  b.unmap();
  return b;
}
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);

/** Random Q4_K rows: sane halves for d and dmin, random scales and nibbles. */
function q4k(rows: number, cols: number): Uint8Array {
  const blocks = (rows * cols) / 256;
  const out = new Uint8Array(blocks * 144);
  for (let b = 0; b < blocks; b++) {
    const o = b * 144;
    out[o] = 0x00; out[o + 1] = 0x20; // d ≈ 0.0078
    out[o + 2] = 0x00; out[o + 3] = 0x1c; // dmin ≈ 0.0039
    for (let i = 4; i < 144; i++) out[o + i] = (rand() * 256) | 0;
  }
  return out;
}
/** Random Q6_K rows: random ql, qh and scales, d a sane half. */
function q6k(rows: number, cols: number): Uint8Array {
  const blocks = (rows * cols) / 256;
  const out = new Uint8Array(blocks * 210);
  for (let i = 0; i < out.length; i++) out[i] = (rand() * 256) | 0;
  for (let b = 0; b < blocks; b++) {
    out[b * 210 + 208] = 0x00;
    out[b * 210 + 209] = 0x14; // d ≈ 0.001
  }
  return out;
}
function xs(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rand() * 2 - 1;
  return x;
}

async function readF32(buffer: GPUBuffer, floats: number): Promise<Float32Array> {
  const read = device.createBuffer({ size: floats * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, read, 0, floats * 4);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(read.getMappedRange().slice(0));
  read.destroy();
  return out;
}

/** max_i |got[i] − want[i]| over max_i |want[i]|, i < got.length: a kernel's error against a reference. */
function maxRelErr(got: Float32Array, want: Float32Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < got.length; i++) { err = Math.max(err, Math.abs(got[i]! - want[i]!)); scale = Math.max(scale, Math.abs(want[i]!)); }
  return err / scale;
}

/** µs per dispatch: median over 5 timed passes of REPS dispatches (encode(i) records dispatch i). */
async function time(encode: (pass: GPUComputePassEncoder, i: number) => void): Promise<number> {
  const qs = device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const runs: number[] = [];
  for (let r = 0; r < 6; r++) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    for (let i = 0; i < REPS; i++) encode(pass, i);
    pass.end();
    enc.resolveQuerySet(qs, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const ns = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    if (r > 0) runs.push(Number(ns[1]! - ns[0]!) / 1e3 / REPS);
  }
  runs.sort((a, b) => a - b);
  return Math.round(runs[2]! * 100) / 100;
}

function pipeline(code: string, constants: Record<string, number> = {}): GPUComputePipeline {
  const module = device.createShaderModule({ code });
  return device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main', constants } });
}
function bind(p: GPUComputePipeline, buffers: GPUBuffer[]): GPUBindGroup {
  return device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
}

// ---- candidate: Q4_K by 16-byte chunks -------------------------------------------------------
// A Q4_K block (144 B) is 9 vec4<u32>: the header (d, dmin | 12 scale bytes) and 8 chunks of 16 qs
// bytes. Chunk c holds 16 low nibbles of sub-block 2(c>>1) and 16 high nibbles of the next, at
// value offset 64(c>>1) + 16(c&1). LANES lanes per row walk the row's chunks; shuffle-xor sums.
const CHUNK = /* wgsl */ `
enable subgroups;
override LANES: u32 = 16u;
override PAIR: u32 = 1u;
override SHARED: u32 = 0u;  // 1: sum lanes through workgroup memory (subgroups narrower than LANES)
const WG: u32 = 256u;
var<workgroup> part: array<vec2<f32>, WG>;
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w1: array<vec4<u32>>;

fn gelu_tanh(x: f32) -> f32 {
  let u2 = 1.5957691216057308 * (x + 0.044715 * x * x * x);
  return x / (1.0 + exp(-clamp(u2, -80.0, 80.0)));
}
fn nib(w: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u));
}
// (d*sc, dmin*m) of sub-blocks 2q and 2q+1 from the header.
fn scales(h: vec4<u32>, q: u32) -> vec4<f32> {
  let dm = unpack2x16float(h.x);
  let sc_lo = h.y & 0x3f3f3f3fu;
  let m_lo = h.z & 0x3f3f3f3fu;
  let sc_hi = (h.w & 0x0f0f0f0fu) | ((h.y >> 2u) & 0x30303030u);
  let m_hi = ((h.w >> 4u) & 0x0f0f0f0fu) | ((h.z >> 2u) & 0x30303030u);
  let j = 2u * q;
  let sw = select(sc_lo, sc_hi, j >= 4u);
  let mw = select(m_lo, m_hi, j >= 4u);
  let s = (j & 3u) * 8u;
  return vec4<f32>(dm.x * f32((sw >> s) & 255u), dm.y * f32((mw >> s) & 255u), dm.x * f32((sw >> (s + 8u)) & 255u), dm.y * f32((mw >> (s + 8u)) & 255u));
}
fn chunk_dot(qv: vec4<u32>, h: vec4<u32>, k: u32) -> f32 {
  let c = k & 7u;
  let blk = k >> 3u;
  let sm = scales(h, c >> 1u);
  let xb = (blk * 256u + 64u * (c >> 1u) + 16u * (c & 1u)) / 4u;
  var lo = 0.0;
  var hi = 0.0;
  var slo = vec4<f32>(0.0);
  var shi = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    let xl = x[xb + i];
    let xh = x[xb + 8u + i];
    lo += dot(nib(qv[i], 0u), xl);
    hi += dot(nib(qv[i], 4u), xh);
    slo += xl;
    shi += xh;
  }
  let one = vec4<f32>(1.0);
  return sm.x * lo - sm.y * dot(slo, one) + sm.z * hi - sm.w * dot(shi, one);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = (wid.x * WG + li) / LANES;
  let lane = li % LANES;
  let chunks = p.cols / 32u;
  var acc = vec2<f32>(0.0);
  if (row < p.rows) {
    let base = row * chunks / 8u * 9u;
    for (var k = lane; k < chunks; k += LANES) {
      let v = base + (k >> 3u) * 9u;
      acc.x += chunk_dot(w0[v + 1u + (k & 7u)], w0[v], k);
      if (PAIR == 1u) {
        acc.y += chunk_dot(w1[v + 1u + (k & 7u)], w1[v], k);
      }
    }
  }
  if (SHARED == 1u) {
    part[li] = acc;
    workgroupBarrier();
    if (lane == 0u) {
      for (var i = 1u; i < LANES; i++) { acc += part[li + i]; }
    }
  } else {
    for (var o = LANES / 2u; o > 0u; o /= 2u) {
      acc += subgroupShuffleXor(acc, o);
    }
  }
  if (lane == 0u && row < p.rows) {
    y[row] = select(acc.x, gelu_tanh(acc.x) * acc.y, PAIR == 1u);
  }
}`;

const EMPTY = /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  if (wid.x * 256u + li == p.rows + 100000000u) { y[0] = 1.0; }
}`;

const STREAM = /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> w1: array<vec4<u32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&w0);
  var a = vec4<u32>(0u);
  for (var i = gid.x; i < n; i += nwg.x * 256u) {
    a ^= w0[i];
    if (p.cols == 1u) { a ^= w1[i]; }
  }
  if (all(a == vec4<u32>(p.rows))) { y[0] = a.x; }
}`;

// --record: what recording a decode step's dispatches costs on the CPU, by call. 420 dispatches
// over 12 pipelines and 420 bind groups (as a decode step has), recorded 50 times; with each
// dispatch's own pipeline and bind group, with dynamic offsets, or with one pipeline and bind group
// for all (only dispatchWorkgroups); then finish + submit (Dawn translates to Vulkan there).
if (process.argv.includes('--record')) {
  const code = `struct C { n: u32 }
@group(0) @binding(0) var<storage, read_write> y: array<u32>;
@group(0) @binding(1) var<uniform> c: C;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x == c.n + 99999u) { y[0] = 1u; } }`;
  const layout = device.createBindGroupLayout({ entries: [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } }] });
  const dynLayout = device.createBindGroupLayout({ entries: [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } }] });
  // Pipeline i of a layout: the shader with its own constant, so that no two pipelines are the same.
  const mk = (l: GPUBindGroupLayout, i: number, source = code) => device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [l] }),
    compute: { module: device.createShaderModule({ code: source.replace('99999u', `${99999 + i}u`) }), entryPoint: 'main' } });
  const pipes = Array.from({ length: 12 }, (_, i) => mk(layout, i));
  const dynPipes = Array.from({ length: 12 }, (_, i) => mk(dynLayout, i));
  const yb = device.createBuffer({ size: 64, usage: S });
  const ub = device.createBuffer({ size: 4096, usage: GPUBufferUsage.UNIFORM });
  const N = 420;
  const groups = Array.from({ length: N }, () => device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: yb } }, { binding: 1, resource: { buffer: ub, size: 16 } }] }));
  const dynGroups = Array.from({ length: N }, () => device.createBindGroup({ layout: dynLayout, entries: [{ binding: 0, resource: { buffer: yb } }, { binding: 1, resource: { buffer: ub, size: 16 } }] }));
  const offsets = new Uint32Array([256]);
  const variants: Record<string, (pass: GPUComputePassEncoder, i: number) => void> = {
    own: (pass, i) => { pass.setPipeline(pipes[i % 12]!); pass.setBindGroup(0, groups[i]!); pass.dispatchWorkgroups(4); },
    dynamic: (pass, i) => { pass.setPipeline(dynPipes[i % 12]!); pass.setBindGroup(0, dynGroups[i]!, offsets, 0, 1); pass.dispatchWorkgroups(4); },
    dynamicArray: (pass, i) => { pass.setPipeline(dynPipes[i % 12]!); pass.setBindGroup(0, dynGroups[i]!, [256]); pass.dispatchWorkgroups(4); },
    bindOnly: (pass, i) => { if (i === 0) pass.setPipeline(pipes[0]!); pass.setBindGroup(0, groups[i]!); pass.dispatchWorkgroups(4); },
    dispatchOnly: (pass, i) => { if (i === 0) { pass.setPipeline(pipes[0]!); pass.setBindGroup(0, groups[0]!); } pass.dispatchWorkgroups(4); },
  };
  // Bindings per dispatch (a decode step's have 5 to 14): 10-entry bind groups over a ring of 48
  // buffers, dispatch i writing buffer i and reading the 8 before it (a chain of dependencies, so
  // Dawn places a barrier before each dispatch); and the same chain with 2-entry groups.
  const ring = Array.from({ length: 48 }, () => device.createBuffer({ size: 256, usage: S }));
  const wideCode = `struct C { n: u32 }
${Array.from({ length: 8 }, (_, j) => `@group(0) @binding(${j}) var<storage, read> r${j}: array<u32>;`).join('\n')}
@group(0) @binding(8) var<storage, read_write> y: array<u32>;
@group(0) @binding(9) var<uniform> c: C;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x == c.n + 99999u) { y[0] = ${Array.from({ length: 8 }, (_, j) => `r${j}[0]`).join(' + ')}; }
}`;
  const wideLayout = device.createBindGroupLayout({ entries: [
    ...Array.from({ length: 8 }, (_, j): GPUBindGroupLayoutEntry => ({ binding: j, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } })),
    { binding: 8, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
    { binding: 9, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } }] });
  const widePipes = Array.from({ length: 12 }, (_, i) => mk(wideLayout, i, wideCode));
  const wideGroups = Array.from({ length: N }, (_, i) => device.createBindGroup({ layout: wideLayout, entries: [
    ...Array.from({ length: 8 }, (_, j) => ({ binding: j, resource: { buffer: ring[(i + 47 - j) % 48]! } })),
    { binding: 8, resource: { buffer: ring[i % 48]! } }, { binding: 9, resource: { buffer: ub, size: 16 } }] }));
  const chainGroups = Array.from({ length: N }, (_, i) => device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: ring[i % 48]! } }, { binding: 1, resource: { buffer: ub, size: 16 } }] }));
  variants.wide10 = (pass, i) => { pass.setPipeline(widePipes[i % 12]!); pass.setBindGroup(0, wideGroups[i]!); pass.dispatchWorkgroups(4); };
  variants.chain2 = (pass, i) => { pass.setPipeline(pipes[i % 12]!); pass.setBindGroup(0, chainGroups[i]!); pass.dispatchWorkgroups(4); };
  const out: Record<string, { record_ms: number; finish_submit_ms: number }> = {};
  for (const [name, rec] of Object.entries(variants)) {
    let recordMs = 0;
    let submitMs = 0;
    for (let it = 0; it < 60; it++) {
      const t0 = performance.now();
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (let i = 0; i < N; i++) rec(pass, i);
      pass.end();
      const t1 = performance.now();
      device.queue.submit([enc.finish()]);
      const t2 = performance.now();
      if (it >= 10) { recordMs += t1 - t0; submitMs += t2 - t1; }
      if (it % 10 === 9) await device.queue.onSubmittedWorkDone();
    }
    out[name] = { record_ms: Math.round((recordMs / 50) * 1000) / 1000, finish_submit_ms: Math.round((submitMs / 50) * 1000) / 1000 };
    log(`${name}: ${JSON.stringify(out[name])}`);
  }
  console.log(JSON.stringify({ device: description, dispatches: N, results: out }, null, 1));
  process.exit(0);
}

// --int8: multiply-adds per second of f32 vec4 fma chains against dot4I8Packed chains (8
// independent accumulators a thread, every lane's result used so none is optimised away), on a
// grid of 132 × 64 workgroups of 256 threads. Counts a multiply and an add as 2 operations.
if (process.argv.includes('--int8')) {
  if (!gpu.wgslLanguageFeatures.has('packed_4x8_integer_dot_product')) throw new Error('no packed_4x8_integer_dot_product on this adapter');
  const steps = 2048;
  const groups = 132 * 64;
  // A kernel of 8 chains a thread: accumulator j starts at init(j) and takes step(j) each step;
  // total(sum of the accumulators) is compared so that every result is used.
  const chains = (init: (j: number) => string, step: (j: number) => string, total: (sum: string) => string) => {
    const js = Array.from({ length: 8 }, (_, j) => j);
    return `@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  ${js.map((j) => `var a${j} = ${init(j)};`).join(' ')}
  for (var i = 0u; i < ${steps}u; i++) { ${js.map(step).join(' ')} }
  if (${total(js.map((j) => `a${j}`).join(' + '))} == 12345) { out[0] = 1u; }
}`;
  };
  const kernels = {
    f32_fma: chains((j) => `vec4<f32>(f32(g.x + ${j}u))`, (j) => `a${j} = fma(a${j}, vec4<f32>(0.999), vec4<f32>(0.001));`,
      (sum) => `i32(dot(${sum}, vec4<f32>(1.0)))`),
    dot4I8Packed: chains((j) => `i32(g.x + ${j}u)`, (j) => `a${j} += dot4I8Packed(0x01020304u ^ g.x ^ ${j}u, 0x05060708u + i);`, (sum) => sum),
  };
  const out = device.createBuffer({ size: 16, usage: S });
  const results: Record<string, { ms_per_dispatch: number; tops: number }> = {};
  for (const [name, code] of Object.entries(kernels)) {
    const pl = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
    const bg = device.createBindGroup({ layout: pl.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] });
    const run = async (reps: number) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pl);
      pass.setBindGroup(0, bg);
      for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(groups);
      pass.end();
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / reps;
    };
    await run(2);
    const ms = Math.min(await run(10), await run(10));
    // 8 chains × 4 multiply-adds (a vec4 fma, or a 4-wide dot) a step, 2 operations each.
    const tops = (groups * 256 * steps * 8 * 4 * 2) / ms / 1e9;
    results[name] = { ms_per_dispatch: Math.round(ms * 1000) / 1000, tops: Math.round(tops * 10) / 10 };
    log(`${name}: ${JSON.stringify(results[name])}`);
  }
  console.log(JSON.stringify({ device: description, threads: groups * 256, steps, results }, null, 1));
  process.exit(0);
}

// --matmul: prefill's Q4_K and Q6_K matmuls at E2B shapes for a 512-token block, the f32 kernels
// (LinearKernels' default tile) against the int8 one (x rounded to 8 bits) by the default split
// rule and at 1 to 8 K splits;
// µs a dispatch and TFLOP/s (a multiply and an add counted as 2), and the int8 result's error
// against the f32 one. --tokens N changes the block.
if (process.argv.includes('--matmul')) {
  const T = arg('tokens', 512);
  const mmShapes = [
    { name: 'gate 6144x1536', rows: 6144, cols: 1536 },
    { name: 'gate 12288x1536', rows: 12288, cols: 1536 },
    { name: 'ffn_down 1536x6144', rows: 1536, cols: 6144 },
    { name: 'ffn_down 1536x12288', rows: 1536, cols: 12288 },
    { name: 'attn_q 2048x1536', rows: 2048, cols: 1536 },
    { name: 'attn_output 1536x2048', rows: 1536, cols: 2048 },
    { name: 'attn_k 256x1536', rows: 256, cols: 1536 },
    { name: 'ffn_down Q6_K 1536x6144', rows: 1536, cols: 6144, type: GGMLType.Q6_K },
    { name: 'ffn_down Q6_K 1536x12288', rows: 1536, cols: 12288, type: GGMLType.Q6_K },
  ];
  const lin = new LinearKernels(device);
  const out: Record<string, Record<string, number | string>> = {};
  for (const { name, rows, cols, type = GGMLType.Q4_K } of mmShapes) {
    const w = storage(type === GGMLType.Q6_K ? q6k(rows, cols) : q4k(rows, cols));
    const x = storage(xs(T * cols));
    const y = device.createBuffer({ size: T * rows * 4, usage: S | GPUBufferUsage.COPY_SRC });
    const r: Record<string, number | string> = {};
    const flop = 2 * rows * cols * T;
    const run = async (key: string, extra: { int8?: boolean; kSplits?: number }, want?: Float32Array): Promise<Float32Array> => {
      const d = await lin.bindMatMul({ weight: w, type, rows, cols, tokens: T, x, y, ...extra });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      d.encode(pass, T);
      pass.end();
      device.queue.submit([enc.finish()]);
      const got = await readF32(y, T * rows);
      if (want) r[`${key}_err`] = maxRelErr(got, want).toExponential(2);
      const us = await time((p) => d.encode(p, T));
      r[key] = us;
      r[`${key}_tflops`] = Math.round((flop / us / 1e6) * 10) / 10;
      d.destroy();
      return got;
    };
    const want = await run('f32', {});
    await run('int8', { int8: true }, want); // the default split rule and tile
    for (const kSplits of [1, 2, 4, 8]) await run(`int8_s${kSplits}`, { int8: true, kSplits }, want);
    log(`${name}: ${JSON.stringify(r)}`);
    out[name] = r;
    w.destroy(); x.destroy(); y.destroy();
  }
  console.log(JSON.stringify({ device: description, reps: REPS, tokens: T, results: out }, null, 1));
  process.exit(0);
}

interface Shape { name: string; rows: number; cols: number; pair: boolean }
const shapes: Shape[] = [
  { name: 'gate+up+gelu 2x6144x1536', rows: 6144, cols: 1536, pair: true },
  { name: 'ffn_down 1536x6144', rows: 1536, cols: 6144, pair: false },
  { name: 'attn_output 1536x2048', rows: 1536, cols: 2048, pair: false },
  { name: 'gate+up+gelu 2x12288x1536', rows: 12288, cols: 1536, pair: true },
  { name: 'ffn_down 1536x12288', rows: 1536, cols: 12288, pair: false },
  { name: 'inp_gate 256x1536', rows: 256, cols: 1536, pair: false },
];
const results: Record<string, Record<string, number | string>> = {};
const linear = new LinearKernels(device);

// Bring the GPU's clock up before timing: a second of back-to-back streaming reads.
{
  const big = device.createBuffer({ size: 128 << 20, usage: S });
  const pl = pipeline(STREAM);
  const u = uniform([0, 0]);
  const sink = device.createBuffer({ size: 16, usage: S });
  const b = bind(pl, [u, sink, big, big]);
  const t0 = performance.now();
  while (performance.now() - t0 < 1500) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pl); pass.setBindGroup(0, b);
    for (let i = 0; i < 50; i++) pass.dispatchWorkgroups(1024);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  }
}

// --q6k: the generic matvec over weights/q6_k.wgsl against matvec_q6k.forward.wgsl (subgroup lane
// sum) at 8–64 lanes a row, at E2B's Q6_K shapes: the tied output matrix and the "more bits"
// ffn_down and attn_v. Warm: one copy of the weights; cold: copies rotated past the L2.
if (process.argv.includes('--q6k')) {
  const q6Shapes = [
    { name: 'output 262144x1536', rows: 262144, cols: 1536, copies: 1 },
    { name: 'ffn_down 1536x6144', rows: 1536, cols: 6144, copies: 8 },
    { name: 'ffn_down 1536x12288', rows: 1536, cols: 12288, copies: 8 },
    { name: 'attn_v 256x1536', rows: 256, cols: 1536, copies: 8 },
  ];
  const out: Record<string, Record<string, number | string>> = {};
  const aux = storage(new Float32Array(4));
  const only = process.argv.indexOf('--shape') >= 0 ? process.argv[process.argv.indexOf('--shape') + 1]! : '';
  for (const { name, rows, cols, copies } of q6Shapes.filter((sh) => sh.name.includes(only))) {
    const ws = Array.from({ length: copies }, () => storage(q6k(rows, cols)));
    const x = storage(xs(cols));
    const y = device.createBuffer({ size: rows * 4, usage: S | GPUBufferUsage.COPY_SRC });
    const u = uniform([rows, cols, 0, 0, 0, 0, 0]);
    const r: Record<string, number | string> = { bytes: (rows * cols / 256) * 210 };
    const run = async (pl: GPUComputePipeline, lanes: number, key: string, want?: Float32Array): Promise<Float32Array> => {
      const binds = ws.map((w) => device.createBindGroup({ layout: pl.getBindGroupLayout(0), entries: [w, x, y, u, aux].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
      const groups = Math.ceil((rows * lanes) / 256);
      const [gx, gy] = [Math.min(groups, 65535), Math.ceil(groups / 65535)];
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pl); pass.setBindGroup(0, binds[0]!); pass.dispatchWorkgroups(gx, gy);
      pass.end();
      device.queue.submit([enc.finish()]);
      const got = await readF32(y, rows);
      if (want) r[`${key}_err`] = maxRelErr(got, want).toExponential(2);
      r[`${key}_warm`] = await time((pass) => { pass.setPipeline(pl); pass.setBindGroup(0, binds[0]!); pass.dispatchWorkgroups(gx, gy); });
      if (copies > 1) r[`${key}_cold`] = await time((pass, i) => { pass.setPipeline(pl); pass.setBindGroup(0, binds[i % copies]!); pass.dispatchWorkgroups(gx, gy); });
      return got;
    };
    const genericLanes = cols >= 4096 ? 128 : 32;
    const want = await run(await linear.pipeline('matvec', GGMLType.Q6_K, { LANES_PER_ROW: genericLanes }), genericLanes, 'generic');
    for (const lanes of [8, 16, 32, 64]) {
      const code = [reduceSgSource, matvecBindingsSource, matvecQ6kSource, geluSource, weightsCommonSource].join('\n');
      await run(pipeline(code, { LANES_PER_ROW: lanes }), lanes, `q6k${lanes}`, want);
    }
    const dir = process.env.Q6K_VARIANTS;
    if (dir) {
      const { readdirSync, readFileSync } = await import('node:fs');
      for (const f of readdirSync(dir)) {
        for (const lanes of [8, 16, 32, 64]) {
          const code = [reduceSgSource, matvecBindingsSource, readFileSync(`${dir}/${f}`, 'utf8'), geluSource, weightsCommonSource].join('\n');
          await run(pipeline(code, { LANES_PER_ROW: lanes }), lanes, `${f.replace('.wgsl', '')}${lanes}`, want);
        }
      }
    }
    log(`${name}: ${JSON.stringify(r)}`);
    out[name] = r;
    for (const w of ws) w.destroy();
  }
  console.log(JSON.stringify({ device: description, reps: REPS, results: out }, null, 1));
  process.exit(0);
}

for (const shape of shapes) {
  const { rows, cols, pair } = shape;
  const COPIES = 8;
  const host = Array.from({ length: COPIES }, () => [q4k(rows, cols), q4k(rows, cols)] as const);
  const ws = host.map(([a, b]) => [storage(a), storage(b)] as const);
  const xHost = xs(cols);
  const x = storage(xHost);
  // float64 reference of the first 8 rows (copy 0).
  const gelu = (v: number) => v / (1 + Math.exp(-Math.max(-80, Math.min(80, 1.5957691216057308 * (v + 0.044715 * v ** 3)))));
  const dot = (w: Uint8Array, row: number) => {
    const vals = dequantize(GGMLType.Q4_K, w.subarray(row * cols / 256 * 144, (row + 1) * cols / 256 * 144), cols);
    let s = 0;
    for (let c = 0; c < cols; c++) s += vals[c]! * xHost[c]!;
    return s;
  };
  const ref = Array.from({ length: 8 }, (_, row) => (pair ? gelu(dot(host[0]![0], row)) * dot(host[0]![1], row) : dot(host[0]![0], row)));
  const yProd = device.createBuffer({ size: rows * 4, usage: S | GPUBufferUsage.COPY_SRC });
  const yNew = device.createBuffer({ size: rows * 4, usage: S | GPUBufferUsage.COPY_SRC });
  const r: Record<string, number | string> = {};
  const bytes = rows * cols / 256 * 144 * (pair ? 2 : 1);
  r.bytes = bytes;

  // Production kernel.
  const prod = await Promise.all(ws.map(([a, b]) =>
    pair
      ? linear.bindMatVecMulti({ cols, x, gelu: { y: yProd }, parts: [a, b].map((weight) => ({ weight, type: GGMLType.Q4_K, rows })) })
      : linear.bindMatVec({ weight: a, type: GGMLType.Q4_K, rows, cols, x, y: yProd })));
  r.prod_warm = await time((pass) => prod[0]!.encode(pass, 1));
  r.prod_cold = await time((pass, i) => prod[i % COPIES]!.encode(pass, 1));

  const empty = pipeline(EMPTY);
  const u = uniform([rows, cols]);
  const emptyBind = bind(empty, [u, yNew]);
  const emptyGroups = Math.ceil(rows / 8);
  r.empty = await time((pass) => { pass.setPipeline(empty); pass.setBindGroup(0, emptyBind); pass.dispatchWorkgroups(emptyGroups); });

  const stream = pipeline(STREAM);
  const su = uniform([rows, pair ? 1 : 0]);
  const streamBinds = ws.map(([a, b]) => bind(stream, [su, yNew, a, b]));
  r.stream_warm = await time((pass) => { pass.setPipeline(stream); pass.setBindGroup(0, streamBinds[0]!); pass.dispatchWorkgroups(528); });
  r.stream_cold = await time((pass, i) => { pass.setPipeline(stream); pass.setBindGroup(0, streamBinds[i % COPIES]!); pass.dispatchWorkgroups(528); });

  const want = await (async () => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    prod[0]!.encode(pass, 1);
    pass.end();
    device.queue.submit([enc.finish()]);
    return readF32(yProd, rows);
  })();
  for (const lanes of [8, 16, 32, 64]) {
    if (lanes === 64 && process.env.SHARED !== '1') continue;
    const pl = pipeline(CHUNK, { LANES: lanes, PAIR: pair ? 1 : 0, SHARED: Number(process.env.SHARED ?? 0) });
    const binds = ws.map(([a, b]) => bind(pl, [x, u, yNew, a, b]));
    const groups = Math.ceil((rows * lanes) / 256);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pl); pass.setBindGroup(0, binds[0]!); pass.dispatchWorkgroups(groups);
    pass.end();
    device.queue.submit([enc.finish()]);
    const got = await readF32(yNew, rows);
    r[`chunk${lanes}_err`] = maxRelErr(got, want).toExponential(2);
    if (lanes === 8) log(`ref ${ref.slice(0, 4).map((v) => v.toFixed(4))} prod ${[...want.slice(0, 4)].map((v) => v.toFixed(4))} chunk ${[...got.slice(0, 4)].map((v) => v.toFixed(4))}`);
    r[`chunk${lanes}_warm`] = await time((pass) => { pass.setPipeline(pl); pass.setBindGroup(0, binds[0]!); pass.dispatchWorkgroups(groups); });
    r[`chunk${lanes}_cold`] = await time((pass, i) => { pass.setPipeline(pl); pass.setBindGroup(0, binds[i % COPIES]!); pass.dispatchWorkgroups(groups); });
  }
  log(`${shape.name}: ${JSON.stringify(r)}`);
  results[shape.name] = r;
}
console.log(JSON.stringify({ device: description, reps: REPS, results }, null, 1));
process.exit(0);
