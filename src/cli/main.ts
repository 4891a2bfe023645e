// The `rullama` command line. One JSON object (or array) on stdout per command; errors are one
// line on stderr with a non-zero exit, so scripts can rely on both.
import { parseArgs } from 'node:util';
import { RullamaError } from '../core/errors.js';
import { nodeFileSource } from '../core/gguf/node-source.js';
import { readGGUF } from '../core/gguf/read.js';
import { summarizeGGUF } from '../core/gguf/inspect.js';
import { Tokenizer } from '../core/tokenizer/index.js';
import { writeFile } from 'node:fs/promises';
import { encodeChat, stopTokens } from '../core/chat/index.js';
import { generate } from '../core/generate.js';
import { Gemma4Model } from '../core/model/model.js';
import { ReferenceModel } from '../core/reference/forward.js';
import { AdapterUsageError, describeAdapters, readAdapters } from './adapters.js';
import { bench, BenchUsageError } from './bench.js';
import { train, TrainUsageError } from './train.js';
import { openNodeDevice } from './gpu.js';

const USAGE = `usage:
  rullama inspect <model.gguf>
  rullama tokenize --model <model.gguf> [--no-bos] [--no-special] -- <text>
  rullama detokenize --model <model.gguf> <id,id,...|id id ...>
  rullama logits --model <model.gguf> --tokens <id,id,...> --out <file> [--backend gpu|cpu] [--adapter <lora.gguf>[:scale]]...
  rullama generate --model <model.gguf> --prompt <text> [--chat] [--max-tokens N] [--temperature T]
                   [--top-k K] [--top-p P] [--min-p P] [--seed S] [--repeat-penalty R] [--presence-penalty P]
                   [--frequency-penalty F] [--context N] [--ple-on-gpu] [--int8-prefill] [--adapter <lora.gguf>[:scale]]... [--json]
  rullama bench --model <model.gguf> [--prompt-tokens N] [--gen-tokens M] [--runs R] [--prefill-chunk C]
                [--long-tokens N] [--ple-on-gpu] [--int8-prefill] [--adapter <lora.gguf>[:scale]]... [--json]
  rullama train --model <model.gguf> --data <data.jsonl|.txt> --out <adapter.gguf> [--rank R] [--alpha A] [--lr LR]
                [--steps N | --epochs E] [--seq-len L] [--batch B] [--targets q,k,v,o,gate,up,down] [--layers 0,1,…] [--seed S]
                [--warmup N] [--dropout P] [--weight-decay W] [--max-grad-norm G] [--val-fraction F]
                [--checkpoint <file> [--checkpoint-every N]] [--json]`;

class UsageError extends Error {}

async function openModel(path: string | undefined) {
  if (!path) throw new UsageError('--model <path> is required');
  const source = await nodeFileSource(path);
  try {
    return await readGGUF(source);
  } finally {
    await source.close();
  }
}

async function inspect(args: string[]): Promise<unknown> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('inspect takes one GGUF path');
  return summarizeGGUF(await openModel(positionals[0]));
}

async function tokenize(args: string[]): Promise<unknown> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { model: { type: 'string' }, 'no-bos': { type: 'boolean' }, 'no-special': { type: 'boolean' } },
  });
  const tokenizer = Tokenizer.fromGGUF(await openModel(values.model));
  return tokenizer.encode(positionals.join(' '), { addBos: !values['no-bos'], parseSpecial: !values['no-special'] });
}

async function detokenize(args: string[]): Promise<unknown> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { model: { type: 'string' } } });
  const ids = parseIds(positionals.join(','));
  const tokenizer = Tokenizer.fromGGUF(await openModel(values.model));
  return tokenizer.decode(ids);
}

function parseIds(text: string): number[] {
  return text.split(/[\s,\[\]]+/).filter(Boolean).map((s) => {
    const id = Number(s);
    if (!Number.isInteger(id)) throw new UsageError(`not a token id: ${s}`);
    return id;
  });
}

function numberOption(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, not ${String(v)}`);
  return n;
}

/** Writes float32 little-endian logits (after softcap), positions × vocabulary. */
async function logits(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' }, tokens: { type: 'string' }, out: { type: 'string' }, backend: { type: 'string', default: 'gpu' },
      adapter: { type: 'string', multiple: true },
    },
  });
  if (!values.model || !values.tokens || !values.out) throw new UsageError('logits needs --model, --tokens and --out');
  const ids = parseIds(values.tokens);
  if (ids.length === 0) throw new UsageError('--tokens is empty');
  const adapters = await readAdapters(values.adapter);
  const source = await nodeFileSource(values.model);
  try {
    let rows: ArrayLike<number>[];
    if (values.backend === 'cpu') {
      const reference = await ReferenceModel.load(source);
      reference.setAdapters(adapters);
      rows = await reference.forward(ids);
    } else if (values.backend === 'gpu') {
      const { device } = await openNodeDevice();
      const model = await Gemma4Model.load(device, source, { contextSize: ids.length, prefillChunk: Math.min(ids.length, 64), allLogits: true });
      await model.setAdapters(adapters);
      rows = await model.feed(ids, { logits: 'all' });
      model.destroy();
    } else {
      throw new UsageError(`--backend must be gpu or cpu, not ${values.backend}`);
    }
    const out = new Float32Array(rows.length * rows[0]!.length);
    rows.forEach((row, i) => out.set(row, i * row.length));
    await writeFile(values.out, new Uint8Array(out.buffer));
    return { positions: rows.length, vocab: rows[0]!.length, out: values.out, backend: values.backend, adapters: describeAdapters(adapters) };
  } finally {
    await source.close();
  }
}

/** Streams generated text to stdout; with --json, ends with one JSON line of ids and stats. */
async function generateCommand(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' }, prompt: { type: 'string' }, chat: { type: 'boolean' }, json: { type: 'boolean' },
      'max-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' },
      'min-p': { type: 'string' }, seed: { type: 'string' }, context: { type: 'string' },
      'repeat-penalty': { type: 'string' }, 'presence-penalty': { type: 'string' }, 'frequency-penalty': { type: 'string' },
      adapter: { type: 'string', multiple: true }, 'ple-on-gpu': { type: 'boolean' }, 'int8-prefill': { type: 'boolean' },
    },
  });
  if (!values.model || values.prompt === undefined) throw new UsageError('generate needs --model and --prompt');
  const adapters = await readAdapters(values.adapter);
  const source = await nodeFileSource(values.model);
  try {
    const file = await readGGUF(source);
    const tokenizer = Tokenizer.fromGGUF(file);
    const prompt = values.chat ? encodeChat(tokenizer, [{ role: 'user', content: values.prompt }]) : tokenizer.encode(values.prompt);
    const maxTokens = numberOption(values, 'max-tokens') ?? 128;
    const { device } = await openNodeDevice();
    const model = await Gemma4Model.load(device, source, { contextSize: numberOption(values, 'context') ?? Math.min(4096, prompt.length + maxTokens), perLayerTableOnGpu: values['ple-on-gpu'], int8Prefill: values['int8-prefill'] });
    await model.setAdapters(adapters);
    const run = generate(model, tokenizer, prompt, {
      maxTokens,
      temperature: numberOption(values, 'temperature'),
      topK: numberOption(values, 'top-k'),
      topP: numberOption(values, 'top-p'),
      minP: numberOption(values, 'min-p'),
      seed: numberOption(values, 'seed'),
      repetitionPenalty: numberOption(values, 'repeat-penalty'),
      presencePenalty: numberOption(values, 'presence-penalty'),
      frequencyPenalty: numberOption(values, 'frequency-penalty'),
      stopTokens: values.chat ? stopTokens(tokenizer) : [tokenizer.eos],
    });
    let step = await run.next();
    while (!step.done) {
      process.stdout.write(step.value.text);
      step = await run.next();
    }
    process.stdout.write('\n');
    const gpuBytes = model.gpuBytes;
    model.destroy();
    const { tokens, ...stats } = step.value;
    return values.json ? { ids: tokens, ...stats, gpu_bytes: gpuBytes, adapters: describeAdapters(adapters) } : undefined;
  } finally {
    await source.close();
  }
}

const COMMANDS: Record<string, (args: string[]) => Promise<unknown>> = { inspect, tokenize, detokenize, logits, generate: generateCommand, bench, train };

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`rullama: unknown command ${name}\n${USAGE}`);
    return 2;
  }
  try {
    const result = await command(rest);
    if (result !== undefined) process.stdout.write(typeof result === 'string' ? `${result}\n` : `${JSON.stringify(result, null, name === 'inspect' ? 2 : 0)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof BenchUsageError || e instanceof AdapterUsageError || e instanceof TrainUsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`rullama ${name}: ${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    console.error(`rullama ${name}: ${e instanceof RullamaError ? `${e.message} [${e.code}]` : String(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
