// Writes the tiny fixture models the browser tests fetch (test-output/fixtures/<name>.gguf),
// skipping those already there. Run by `npm run test:browser` before the browser suite.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { TINY_CONFIG_NAMES, writeTinyModel } from '../test/fixtures/index.js';

const dir = fileURLToPath(new URL('../test-output/fixtures/', import.meta.url));
await mkdir(dir, { recursive: true });
for (const name of TINY_CONFIG_NAMES) {
  if (!existsSync(`${dir}${name}.gguf`)) await writeTinyModel(name, dir);
}
