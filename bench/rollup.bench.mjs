// Bundles bench/e2b.ts and bench/micro.ts into one file each (bench/dist/e2b.mjs, micro.mjs), for the GPU machine (no Node project
// there): `npx rollup -c bench/rollup.bench.mjs`. `webgpu` and Node's builtins stay external.
// bench/dist/ is git-ignored locally (.git/info/exclude).
import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import resolve from '@rollup/plugin-node-resolve';
import esbuild from 'rollup-plugin-esbuild';

/** `import source from './x.wgsl'` becomes the file's text (as in rollup.config.mjs). */
const wgsl = () => ({
  name: 'wgsl',
  async load(id) {
    if (id.endsWith('.wgsl')) return `export default ${JSON.stringify(await readFile(id, 'utf8'))};`;
  },
});

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default ['e2b', 'micro'].map((name) => ({
  input: `bench/${name}.ts`,
  output: { file: `bench/dist/${name}.mjs`, format: 'es', sourcemap: true, inlineDynamicImports: true },
  external: (id) => id === 'webgpu' || nodeBuiltins.includes(id),
  plugins: [wgsl(), resolve(), esbuild({ target: 'es2022', sourceMap: true })],
}));
