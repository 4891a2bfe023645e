// Node module hook: `import source from './x.wgsl'` yields the file's text.
import { readFile } from 'node:fs/promises';

export async function load(url, context, next) {
  if (!url.endsWith('.wgsl')) return next(url, context);
  const text = await readFile(new URL(url), 'utf8');
  return { format: 'module', shortCircuit: true, source: `export default ${JSON.stringify(text)};` };
}
