// Float64 building blocks of the reference forward pass: plain loops over JS numbers, written
// for clarity; the GPU path is judged against these.

/** x · (mean(x²) + eps)^(-1/2) · w, over consecutive slices of `size` (w omitted: unweighted). */
export function rmsNorm(x: Float64Array, eps: number, w: Float32Array | null, size = x.length): Float64Array {
  const out = new Float64Array(x.length);
  for (let s = 0; s < x.length; s += size) {
    let sum = 0;
    for (let i = 0; i < size; i++) sum += x[s + i]! * x[s + i]!;
    const scale = 1 / Math.sqrt(sum / size + eps);
    for (let i = 0; i < size; i++) out[s + i] = x[s + i]! * scale * (w ? w[i]! : 1);
  }
  return out;
}

/** y = W·x for W stored row-major as `rows` rows of x.length values (GGUF ne = [cols, rows]). */
export function matVec(w: Float32Array, x: Float64Array, rows: number): Float64Array {
  const cols = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    const base = r * cols;
    for (let c = 0; c < cols; c++) sum += w[base + c]! * x[c]!;
    y[r] = sum;
  }
  return y;
}

/**
 * GELU with the tanh approximation (gelu_pytorch_tanh), used everywhere in Gemma 4:
 * 0.5·x·(1 + tanh(u)) written as x / (1 + e^(−2u)), which is the same function without the
 * cancellation of 1 + tanh(u) for large negative x.
 */
export function gelu(x: number): number {
  const u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return x / (1 + Math.exp(-2 * u));
}

/**
 * NeoX ("rotate-half") RoPE in place on each head of `x`: pairs (j, j + dims/2) of the first
 * `dims` values rotate by p · base^(-2j/dims) / factor[j]; values past `dims` are untouched.
 */
export function rope(x: Float64Array, headDim: number, dims: number, position: number, base: number, factors: Float32Array | null): void {
  const half = dims / 2;
  for (let h = 0; h < x.length; h += headDim) {
    for (let j = 0; j < half; j++) {
      const angle = (position * Math.pow(base, (-2 * j) / dims)) / (factors ? factors[j]! : 1);
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      const a = x[h + j]!;
      const b = x[h + j + half]!;
      x[h + j] = a * cos - b * sin;
      x[h + j + half] = a * sin + b * cos;
    }
  }
}

export function add(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}
