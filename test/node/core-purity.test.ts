// src/core must run in pages, workers and Node: no DOM globals, no lit, and Node built-ins only
// in the files that exist to adapt Node (their names end in node-source.ts or node-dir.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CORE = fileURLToPath(new URL('../../src/core/', import.meta.url));
const NODE_ADAPTERS = /(^|\/)node-(source|dir)\.ts$/;
const DOM = /\b(document|window|navigator|localStorage|HTMLElement|customElements)\s*[.[(]/;

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await files(path)));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

test('src/core has no DOM, no lit, and Node built-ins only in its Node adapters', async () => {
  const problems: string[] = [];
  for (const path of await files(CORE)) {
    const rel = path.slice(CORE.length);
    const code = (await readFile(path, 'utf8')).replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    if (DOM.test(code)) problems.push(`${rel}: uses a DOM global`);
    if (/from ['"]lit/.test(code)) problems.push(`${rel}: imports lit`);
    if (/from ['"]node:/.test(code) && !NODE_ADAPTERS.test(rel)) problems.push(`${rel}: imports a Node built-in`);
  }
  assert.deepEqual(problems, []);
});
