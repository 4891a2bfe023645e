// `rullama bench`: load time, prefill and decode speed, time to first token and GPU memory of the
// engine on one model, as one JSON object (the benchmark record's format).
import { parseArgs } from 'node:util';
import { Engine } from '../core/engine.js';
import { nodeFileSource } from '../core/gguf/node-source.js';
import { openNodeDevice } from './gpu.js';

const PASSAGE =
  'In the beginning the small village by the river woke early. Bakers lit their ovens, fishermen mended nets, ' +
  'and children ran along the muddy banks chasing the ducks that gathered under the old stone bridge. ';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summary = (xs: number[]) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs), runs: xs });
const round = (x: number) => Math.round(x * 10) / 10;

export class BenchUsageError extends Error {}

export async function bench(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' }, 'prompt-tokens': { type: 'string', default: '512' }, 'gen-tokens': { type: 'string', default: '128' },
      runs: { type: 'string', default: '5' }, 'prefill-chunk': { type: 'string' }, json: { type: 'boolean' },
    },
  });
  if (!values.model) throw new BenchUsageError('bench needs --model');
  const [promptTokens, genTokens, runs] = ['prompt-tokens', 'gen-tokens', 'runs'].map((k) => Number(values[k as 'runs']));
  for (const [k, v] of [['prompt-tokens', promptTokens], ['gen-tokens', genTokens], ['runs', runs]] as const) {
    if (!Number.isInteger(v) || v! < 1) throw new BenchUsageError(`--${k} must be a positive integer`);
  }
  const chunk = values['prefill-chunk'] ? Number(values['prefill-chunk']) : undefined;
  const { device, description } = await openNodeDevice();
  const source = await nodeFileSource(values.model);
  try {
    const t0 = performance.now();
    const engine = await Engine.load(source, { device, contextSize: promptTokens! + genTokens! + 1, prefillChunk: chunk });
    const loadMs = performance.now() - t0;
    let prompt = engine.tokenize(PASSAGE);
    while (prompt.length < promptTokens!) prompt = [...prompt, ...engine.tokenize(PASSAGE, { addBos: false })];
    prompt = prompt.slice(0, promptTokens);
    const prefill: number[] = [];
    const decode: number[] = [];
    const ttft: number[] = [];
    // One warm-up run (pipeline creation, first-use costs), then the timed runs from an empty cache.
    for (let r = 0; r <= runs!; r++) {
      engine.reset();
      const { stats } = await engine.generate(prompt, { maxTokens: genTokens }).result;
      if (r === 0) continue;
      prefill.push(round(stats.prefillTokensPerSecond));
      decode.push(round(stats.decodeTokensPerSecond));
      ttft.push(round(stats.timeToFirstTokenMs));
    }
    const result = {
      prefill_tok_s: median(prefill),
      decode_tok_s: median(decode),
      ttft_ms: median(ttft),
      gpu_bytes: engine.gpuBytes,
      adapter: description,
      load_ms: round(loadMs),
      prompt_tokens: promptTokens,
      gen_tokens: genTokens,
      prefill_chunk: engine.model.prefillChunk,
      detail: { prefill_tok_s: summary(prefill), decode_tok_s: summary(decode), ttft_ms: summary(ttft) },
    };
    await engine.dispose();
    return result;
  } finally {
    await source.close();
  }
}
