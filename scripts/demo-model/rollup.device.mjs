// Bundles scripts/demo-model/device.ts into tmp/demo-model/carry/device.mjs for the GPU machine
// (same settings as bench/rollup.bench.mjs: `webgpu` and Node's builtins stay external).
import bench from '../../bench/rollup.bench.mjs';

export default {
  ...bench,
  input: 'scripts/demo-model/device.ts',
  output: { ...bench.output, file: 'tmp/demo-model/carry/device.mjs' },
};
