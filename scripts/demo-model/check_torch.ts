/**
 * Checks scripts/demo-model/gemma4_torch.py (the training model) against the project's float64
 * CPU reference: `python3 scripts/demo-model/train.py selftest --out DIR` writes random float32
 * weights and torch float64 logits; this writes those weights as an F32 GGUF with our writer,
 * runs src/core/reference on the same tokens and prints the largest differences.
 *   node --import ./scripts/ts-loader.mjs scripts/demo-model/check_torch.ts DIR
 */
import { readFile } from 'node:fs/promises';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { writeDemoGGUF } from './model.js';

const dir = process.argv[2]!;
await writeDemoGGUF(dir, `${dir}/selftest-f32.gguf`, 'f32');
const { tokens } = JSON.parse(await readFile(`${dir}/tokens.json`, 'utf8')) as { tokens: number[] };
const torchLogits = new Float32Array((await readFile(`${dir}/logits-torch.f32`)).buffer.slice(0));
const src = await nodeFileSource(`${dir}/selftest-f32.gguf`);
const ref = await ReferenceModel.load(src);
const rows = await ref.forward(tokens);
await src.close();
const V = rows[0]!.length;
let worstRel = 0;
let argmaxAgree = 0;
for (let t = 0; t < rows.length; t++) {
  const r = rows[t]!;
  let maxAbs = 0;
  let maxDiff = 0;
  let am = 0;
  let amT = 0;
  for (let i = 0; i < V; i++) {
    const a = r[i]!;
    const b = torchLogits[t * V + i]!;
    maxAbs = Math.max(maxAbs, Math.abs(a));
    maxDiff = Math.max(maxDiff, Math.abs(a - b));
    if (a > r[am]!) am = i;
    if (b > torchLogits[t * V + amT]!) amT = i;
  }
  worstRel = Math.max(worstRel, maxDiff / maxAbs);
  if (am === amT) argmaxAgree++;
}
console.log(JSON.stringify({ positions: rows.length, vocab: V, max_rel_err: worstRel, argmax_agree: argmaxAgree }));
if (worstRel > 1e-4) process.exit(1);
