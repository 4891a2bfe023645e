// Four builds from one source tree:
//  dist/rullama-worker.js       the engine worker (self-contained), next to the files that start it
//  dist/index.js, dist/core.js  ES modules for bundlers (lit, marked and dompurify left to the app's bundler)
//  dist/rullama.js              one self-contained file for <script type="module" src="…/rullama.js">
//  dist/cli.js                  the Node CLI (`rullama`), with the `webgpu` package left external
import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, posix, relative } from 'node:path';
import resolve from '@rollup/plugin-node-resolve';
import esbuild from 'rollup-plugin-esbuild';

/** `import source from './x.wgsl'` becomes the file's text. */
const wgsl = () => ({
  name: 'wgsl',
  async load(id) {
    if (id.endsWith('.wgsl')) return `export default ${JSON.stringify(await readFile(id, 'utf8'))};`;
  },
});

const WORKER_FILE = 'rullama-worker.js';
const WORKER_SOURCE = "new URL('../worker/worker.ts', import.meta.url)";
const PLACEHOLDER = '__rullama_worker_url___________';

/**
 * The client starts its worker with `new Worker(new URL('../worker/worker.ts', import.meta.url))`,
 * which the test server and bundlers resolve in the source tree; in our builds it becomes the
 * path from each output chunk to dist/rullama-worker.js (padded to the placeholder's length so
 * source maps stay exact).
 */
const workerUrl = () => ({
  name: 'worker-url',
  transform(code) {
    if (code.includes(WORKER_SOURCE)) return { code: code.replaceAll(WORKER_SOURCE, `new URL('${PLACEHOLDER}', import.meta.url)`), map: null };
  },
  renderChunk(code, chunk) {
    if (!code.includes(PLACEHOLDER)) return null;
    let path = relative(dirname(chunk.fileName), WORKER_FILE).split('\\').join(posix.sep);
    if (!path.startsWith('.')) path = `./${path}`;
    while (path.length + 2 <= PLACEHOLDER.length) path = `./${path}`;
    if (path.length < PLACEHOLDER.length) path += '?';
    return { code: code.replaceAll(PLACEHOLDER, path), map: null };
  },
});

const ts = (minify = false) => esbuild({ target: 'es2022', minify, sourceMap: true });
const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

const appDependency = (id) => ['lit', 'marked', 'dompurify'].includes(id) || id.startsWith('lit/') || id.startsWith('@lit/');

export default [
  {
    input: 'src/worker/worker.ts',
    output: { file: `dist/${WORKER_FILE}`, format: 'es', sourcemap: true },
    plugins: [wgsl(), resolve({ browser: true }), ts(true)],
  },
  {
    input: { index: 'src/index.ts', core: 'src/core/index.ts', node: 'src/node.ts' },
    output: { dir: 'dist', format: 'es', sourcemap: true, chunkFileNames: 'chunks/[name]-[hash].js' },
    external: (id) => appDependency(id) || nodeBuiltins.includes(id),
    plugins: [workerUrl(), wgsl(), resolve(), ts()],
  },
  {
    input: 'src/browser.ts',
    output: { file: 'dist/rullama.js', format: 'es', sourcemap: true, inlineDynamicImports: true },
    plugins: [workerUrl(), wgsl(), resolve({ browser: true, exportConditions: ['production'] }), ts(true)],
  },
  {
    input: 'src/cli/main.ts',
    output: { file: 'dist/cli.js', format: 'es', sourcemap: true, banner: '#!/usr/bin/env node' },
    external: (id) => id === 'webgpu' || nodeBuiltins.includes(id),
    plugins: [wgsl(), resolve(), ts()],
  },
];
