// `rullama bench`: load time, prefill and decode speed, time to first token and GPU memory of the
// engine on one model, as one JSON object (the benchmark record's format). With --long-tokens N
// (default 4096, 0 to skip) it also prefills an N-token prompt and decodes after it (decode at long
// context). CPU time per token in JavaScript: recording + submitting the forward chain and
// fetching per-layer-embedding rows, per forward call. --ple-on-gpu keeps the per-layer-embedding
// table on the GPU (decode steps then chain there; see Gemma4Model.chainSample); --int8-prefill runs
// prefill's Q4_K and Q6_K matmuls in 8-bit integers (EngineLoadOptions.int8Prefill). The per-kernel GPU breakdown (timestamp
// queries) is in bench/e2b.ts, which drives the forward pass directly.
import { parseArgs } from 'node:util';
import { Engine } from '../core/engine.js';
import { nodeFileSource } from '../core/gguf/node-source.js';
import { forwardCpu } from '../core/model/gpu-forward.js';
import { pleCpu } from '../core/model/ple-rows.js';
import { describeAdapters, readAdapters } from './adapters.js';
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
      'long-tokens': { type: 'string', default: '4096' }, adapter: { type: 'string', multiple: true },
      'ple-on-gpu': { type: 'boolean' }, 'int8-prefill': { type: 'boolean' },
    },
  });
  if (!values.model) throw new BenchUsageError('bench needs --model');
  const [promptTokens, genTokens, runs] = ['prompt-tokens', 'gen-tokens', 'runs'].map((k) => Number(values[k as 'runs']));
  for (const [k, v] of [['prompt-tokens', promptTokens], ['gen-tokens', genTokens], ['runs', runs]] as const) {
    if (!Number.isInteger(v) || v! < 1) throw new BenchUsageError(`--${k} must be a positive integer`);
  }
  const chunk = values['prefill-chunk'] ? Number(values['prefill-chunk']) : undefined;
  const longTokens = Number(values['long-tokens']);
  if (!Number.isInteger(longTokens) || longTokens < 0) throw new BenchUsageError('--long-tokens must be a non-negative integer');
  const adapters = await readAdapters(values.adapter);
  const { device, description } = await openNodeDevice();
  const source = await nodeFileSource(values.model);
  try {
    const t0 = performance.now();
    const engine = await Engine.load(source, { device, contextSize: Math.max(promptTokens!, longTokens) + genTokens! + 1, prefillChunk: chunk, perLayerTableOnGpu: values['ple-on-gpu'], int8Prefill: values['int8-prefill'] });
    const loadMs = performance.now() - t0;
    await engine.setAdapters(adapters);
    let text = engine.tokenize(PASSAGE);
    while (text.length < Math.max(promptTokens!, longTokens)) text = [...text, ...engine.tokenize(PASSAGE, { addBos: false })];
    const measure = async (n: number) => {
      const prompt = text.slice(0, n);
      const m = { prefill: [] as number[], decode: [] as number[], ttft: [] as number[], recordMs: [] as number[], pleMs: [] as number[] };
      // One warm-up run (pipeline creation, first-use costs), then the timed runs from an empty cache.
      for (let r = 0; r <= runs!; r++) {
        engine.reset();
        const [c0, n0, p0] = [forwardCpu.ms, forwardCpu.calls, pleCpu.ms];
        const { stats } = await engine.generate(prompt, { maxTokens: genTokens }).result;
        if (r === 0) continue;
        m.prefill.push(round(stats.prefillTokensPerSecond));
        m.decode.push(round(stats.decodeTokensPerSecond));
        m.ttft.push(round(stats.timeToFirstTokenMs));
        m.recordMs.push(Math.round(((forwardCpu.ms - c0) / (forwardCpu.calls - n0)) * 1000) / 1000);
        m.pleMs.push(Math.round(((pleCpu.ms - p0) / (forwardCpu.calls - n0)) * 1000) / 1000);
      }
      return m;
    };
    const main = await measure(promptTokens!);
    const { prefill, decode, ttft } = main;
    const long = longTokens > 0 ? await measure(longTokens) : null;
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
      per_layer_table: values['ple-on-gpu'] ? 'gpu' : 'cpu',
      chained_decode: engine.model.chainable,
      prefill_matmuls: engine.model.int8Prefill ? 'int8' : 'f32',
      lora_adapters: describeAdapters(adapters),
      detail: { prefill_tok_s: summary(prefill), decode_tok_s: summary(decode), ttft_ms: summary(ttft) },
      cpu_ms_per_token: { record_submit: summary(main.recordMs), ple_rows: summary(main.pleMs) },
      ...(long
        ? {
            long_tokens: longTokens,
            prefill_long_tok_s: median(long.prefill),
            decode_long_tok_s: median(long.decode),
            long: {
              prefill_tok_s: summary(long.prefill), decode_tok_s: summary(long.decode), ttft_ms: summary(long.ttft),
              cpu_ms_per_token: { record_submit: summary(long.recordMs), ple_rows: summary(long.pleMs) },
            },
          }
        : {}),
    };
    await engine.dispose();
    return result;
  } finally {
    await source.close();
  }
}
