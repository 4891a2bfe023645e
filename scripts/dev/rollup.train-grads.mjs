// Bundles scripts/dev/train-grads.ts into bench/dist/train-grads.mjs for the GPU machine (no Node
// project there), with bench/rollup.bench.mjs's settings (`webgpu` and Node's builtins external):
// `npx rollup -c scripts/dev/rollup.train-grads.mjs`. bench/dist/ is git-ignored.
import bench from '../../bench/rollup.bench.mjs';

export default {
  ...bench,
  input: 'scripts/dev/train-grads.ts',
  output: { ...bench.output, file: 'bench/dist/train-grads.mjs', sourcemap: false },
};
