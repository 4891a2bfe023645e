// `--adapter <gguf>[:scale]` (repeatable) on `logits`, `generate` and `bench`: LoRA adapters in
// llama.cpp's GGUF format, read from disk and applied at their scales.
import { nodeFileSource } from '../core/gguf/node-source.js';
import { readLoraGGUF } from '../core/lora/adapter.js';
import type { AppliedAdapter } from '../core/model/lora-weights.js';

export class AdapterUsageError extends Error {}

export interface AdapterSpec {
  path: string;
  scale: number;
}

/** `path` or `path:scale` (a path may itself hold ':' as long as what follows the last one is not a number). */
export function parseAdapterSpec(text: string): AdapterSpec {
  const m = /^(.+):([^:]*)$/.exec(text);
  if (m && m[2] === '') throw new AdapterUsageError(`--adapter ${text}: a scale must follow the ':'`);
  const scale = m ? Number(m[2]) : Number.NaN;
  return m && /^[-+.\d]/.test(m[2]!) && Number.isFinite(scale) ? { path: m[1]!, scale } : { path: text, scale: 1 };
}

/** Reads every adapter file (the model checks the fit when they are applied). */
export async function readAdapters(specs: readonly string[] | undefined): Promise<AppliedAdapter[]> {
  const applied: AppliedAdapter[] = [];
  for (const text of specs ?? []) {
    const { path, scale } = parseAdapterSpec(text);
    const source = await nodeFileSource(path);
    try {
      applied.push({ adapter: await readLoraGGUF(source), scale });
    } finally {
      await source.close();
    }
  }
  return applied;
}

/** What the JSON outputs report about the applied adapters. */
export function describeAdapters(applied: readonly AppliedAdapter[]): { name: string; scale: number; tensors: number }[] {
  return applied.map(({ adapter, scale = 1 }) => ({ name: adapter.name, scale, tensors: adapter.tensors.size }));
}
