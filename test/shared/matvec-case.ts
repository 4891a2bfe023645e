// One GPU check shared by the browser (Chromium WebGPU) and Node (Dawn) test suites:
// the f32 matrix-vector kernel against a float64 CPU product.
import { openDevice } from '../../src/core/gpu/device.js';
import { MatVecF32 } from '../../src/core/gpu/matvec.js';

function seededNormals(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

export async function matvecMaxRelativeError(gpu: GPU | undefined): Promise<{ maxRelErr: number; adapter: string }> {
  const { device, description } = await openDevice({ gpu });
  try {
    const rows = 300;
    const cols = 1000;
    const w = seededNormals(rows * cols, 1);
    const x = seededNormals(cols, 2);
    const y = await new MatVecF32(device).run(w, x, rows, cols);
    let maxRelErr = 0;
    for (let r = 0; r < rows; r++) {
      let exact = 0;
      let scale = 0;
      for (let c = 0; c < cols; c++) {
        exact += w[r * cols + c]! * x[c]!;
        scale += Math.abs(w[r * cols + c]! * x[c]!);
      }
      maxRelErr = Math.max(maxRelErr, Math.abs(y[r]! - exact) / scale);
    }
    return { maxRelErr, adapter: description };
  } finally {
    device.destroy();
  }
}
