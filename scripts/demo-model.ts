// Puts the model the demo page opens at dist/demo/demo.gguf: the embedded demo model the project
// trained itself (models/demo/rullama-demo.gguf, a small Gemma 4 that answers "What does X
// mean?" questions from WordNet and continues King James passages; see models/demo/MODEL_CARD.md).
// The copy is refreshed whenever it differs in size or age from the committed file.
import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('../models/demo/rullama-demo.gguf', import.meta.url));
const dir = fileURLToPath(new URL('../dist/demo/', import.meta.url));
const target = `${dir}demo.gguf`;
const stale = (): boolean => {
  if (!existsSync(target)) return true;
  const a = statSync(source);
  const b = statSync(target);
  return a.size !== b.size || a.mtimeMs > b.mtimeMs;
};
if (stale()) {
  await mkdir(dir, { recursive: true });
  await copyFile(source, target);
  console.log(`copied ${source} to ${target}`);
}
