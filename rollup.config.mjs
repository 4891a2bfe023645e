// Three builds from one source tree:
//  dist/index.js, dist/core.js  ES modules for bundlers (lit left to the app's bundler)
//  dist/rullama.js              one self-contained file for <script type="module" src="…/rullama.js">
//  dist/cli.js                  the Node CLI (`rullama`), with the `webgpu` package left external
import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import resolve from '@rollup/plugin-node-resolve';
import esbuild from 'rollup-plugin-esbuild';

/** `import source from './x.wgsl'` becomes the file's text. */
const wgsl = () => ({
  name: 'wgsl',
  async load(id) {
    if (id.endsWith('.wgsl')) return `export default ${JSON.stringify(await readFile(id, 'utf8'))};`;
  },
});

const ts = (minify = false) => esbuild({ target: 'es2022', minify, sourceMap: true });
const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default [
  {
    input: { index: 'src/index.ts', core: 'src/core/index.ts', node: 'src/node.ts' },
    output: { dir: 'dist', format: 'es', sourcemap: true, chunkFileNames: 'chunks/[name]-[hash].js' },
    external: (id) => id === 'lit' || id.startsWith('lit/') || id.startsWith('@lit/') || nodeBuiltins.includes(id),
    plugins: [wgsl(), resolve(), ts()],
  },
  {
    input: 'src/browser.ts',
    output: { file: 'dist/rullama.js', format: 'es', sourcemap: true },
    plugins: [wgsl(), resolve({ browser: true, exportConditions: ['production'] }), ts(true)],
  },
  {
    input: 'src/cli/main.ts',
    output: { file: 'dist/cli.js', format: 'es', sourcemap: true, banner: '#!/usr/bin/env node' },
    external: (id) => id === 'webgpu' || nodeBuiltins.includes(id),
    plugins: [wgsl(), resolve(), ts()],
  },
];
