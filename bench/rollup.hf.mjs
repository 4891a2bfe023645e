// Bundles bench/hf-logits.ts into one file, bench/dist/hf-logits.mjs, for the GPU machine (no Node
// project there): `npx rollup -c bench/rollup.hf.mjs`. Same settings as bench/rollup.bench.mjs:
// `webgpu` and Node's builtins stay external; bench/dist/ is git-ignored.
import bench from './rollup.bench.mjs';

export default {
  ...bench,
  input: 'bench/hf-logits.ts',
  output: { ...bench.output, file: 'bench/dist/hf-logits.mjs' },
};
