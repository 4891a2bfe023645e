import matvecSource from '../../wgsl/matvec_f32.forward.wgsl';
import { readBack, uploadStorage, uploadUniform } from './buffers.js';

/**
 * y = W·x for an f32 matrix of `rows` × `cols` (row-major), on the GPU. The pipeline is built once;
 * each call makes its buffers, so this is for checks and tools, not the per-token hot path.
 */
export class MatVecF32 {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly device: GPUDevice) {
    const module = device.createShaderModule({ label: 'matvec_f32', code: matvecSource });
    this.pipeline = device.createComputePipeline({ label: 'matvec_f32', layout: 'auto', compute: { module, entryPoint: 'main' } });
  }

  async run(weight: Float32Array, x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
    if (weight.length !== rows * cols || x.length !== cols) {
      throw new RangeError(`matvec: weight has ${weight.length} values and x ${x.length}, expected ${rows}×${cols} and ${cols}`);
    }
    const { device } = this;
    const w = uploadStorage(device, weight, 'matvec.weight');
    const xb = uploadStorage(device, x, 'matvec.x');
    const y = device.createBuffer({ label: 'matvec.y', size: rows * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const params = uploadUniform(device, new Uint32Array([rows, cols]), 'matvec.params');
    const bindGroup = device.createBindGroup({
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [w, xb, y, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(rows);
    pass.end();
    device.queue.submit([encoder.finish()]);
    const out = new Float32Array(await readBack(device, y, rows * 4));
    for (const b of [w, xb, y, params]) b.destroy();
    return out;
  }
}
