// Writes the model the demo page opens (dist/demo/demo.gguf) when it is missing: a tiny Gemma 4
// model with random weights and the real Gemma 4 tokenizer, from the fixture writer. It has no
// knowledge; it shows the file path (reader, tokenizer) until the trained demo model lands.
import { existsSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { writeTinyModel } from '../test/fixtures/index.js';

const dir = fileURLToPath(new URL('../dist/demo/', import.meta.url));
const target = `${dir}demo.gguf`;
if (!existsSync(target)) {
  await mkdir(dir, { recursive: true });
  const written = await writeTinyModel('tiny-e2b', dir);
  await rename(written.path, target);
  console.log(`wrote ${target}`);
}
