// `rullama train`: LoRA fine-tuning from the command line, the same code as in the browser. Reads
// a dataset (JSON Lines of chat / prompt-completion / text records, or plain text), reports every
// unusable line, trains on the GPU and writes the adapter as a GGUF that llama.cpp and Ollama load.
// Progress is one line per step; the last line is a JSON summary with the loss curve. With
// --checkpoint FILE the state is saved every --checkpoint-every steps and on Ctrl-C, and the run
// continues from FILE when it exists.
import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { RullamaError } from '../core/errors.js';
import { nodeFileSource } from '../core/gguf/node-source.js';
import { readGGUF } from '../core/gguf/read.js';
import type { LoraTarget } from '../core/lora/adapter.js';
import { Gemma4Model } from '../core/model/model.js';
import { Tokenizer } from '../core/tokenizer/tokenizer.js';
import { parseDataset, splitDataset } from '../core/train/data.js';
import { LoraTrainer, type TrainProgress } from '../core/train/trainer.js';
import { openNodeDevice } from './gpu.js';

export class TrainUsageError extends Error {}

/** Three significant digits: a software GPU trains at a fraction of a token per second. */
const speed = (x: number) => Number(x.toPrecision(3));

function number(values: Record<string, unknown>, name: string, integer = false): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new TrainUsageError(`--${name} must be ${integer ? 'an integer' : 'a number'}, not ${String(v)}`);
  return n;
}

export async function train(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' }, data: { type: 'string' }, out: { type: 'string' },
      rank: { type: 'string' }, alpha: { type: 'string' }, lr: { type: 'string' }, steps: { type: 'string' }, epochs: { type: 'string' },
      'seq-len': { type: 'string' }, batch: { type: 'string' }, targets: { type: 'string' }, layers: { type: 'string' }, seed: { type: 'string' },
      'warmup': { type: 'string' }, dropout: { type: 'string' }, 'weight-decay': { type: 'string' }, 'max-grad-norm': { type: 'string' }, 'val-fraction': { type: 'string' },
      checkpoint: { type: 'string' }, 'checkpoint-every': { type: 'string' }, json: { type: 'boolean' },
    },
  });
  if (!values.model || !values.data || !values.out) throw new TrainUsageError('train needs --model, --data and --out');
  const targets = values.targets?.split(',').map((t) => t.trim()).filter(Boolean) as LoraTarget[] | undefined;
  const layers = values.layers?.split(',').map((l) => {
    const n = Number(l.trim());
    if (!Number.isInteger(n)) throw new TrainUsageError(`--layers takes layer numbers, not ${l}`);
    return n;
  });
  const seqLen = number(values, 'seq-len', true) ?? 512;
  const seed = number(values, 'seed', true) ?? 0;
  const checkpointEvery = number(values, 'checkpoint-every', true) ?? 50;
  const say = (line: unknown) => process.stdout.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);

  const source = await nodeFileSource(values.model);
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  let trainer: LoraTrainer | null = null;
  let model: Gemma4Model | null = null;
  try {
    const file = await readGGUF(source);
    const tokenizer = Tokenizer.fromGGUF(file);
    const parsed = parseDataset(await readFile(values.data, 'utf8'), tokenizer, { maxLength: seqLen });
    for (const p of parsed.problems) process.stderr.write(`${values.data}:${p.line}: skipped: ${p.reason}\n`);
    if (parsed.examples.length === 0) throw new RullamaError('bad-argument', `${values.data} holds no usable example`);
    const { train: trainSet, validation } = splitDataset(parsed.examples, number(values, 'val-fraction') ?? (parsed.examples.length >= 10 ? 0.1 : 0), seed);
    const { device, description } = await openNodeDevice();
    model = await Gemma4Model.load(device, source, { file, contextSize: seqLen, prefillChunk: Math.min(seqLen, 128) });
    const t0 = performance.now();
    trainer = await LoraTrainer.create(model, { train: trainSet, validation }, {
      rank: number(values, 'rank', true), alpha: number(values, 'alpha'), targets, layers, learningRate: number(values, 'lr'),
      steps: number(values, 'steps', true), epochs: number(values, 'epochs', true), batchSize: number(values, 'batch', true), maxLength: seqLen, seed,
      warmupSteps: number(values, 'warmup', true), weightDecay: number(values, 'weight-decay'), maxGradNorm: number(values, 'max-grad-norm'),
      dropout: number(values, 'dropout'),
    });
    const setupMs = performance.now() - t0;
    if (values.checkpoint && existsSync(values.checkpoint)) {
      trainer.restore(new Uint8Array(await readFile(values.checkpoint)));
      process.stderr.write(`resumed from ${values.checkpoint} at step ${trainer.step}\n`);
    }
    const saveCheckpoint = async () => {
      if (!values.checkpoint || !trainer) return;
      // Written aside and renamed, so an interruption mid-write leaves the previous checkpoint whole.
      await writeFile(`${values.checkpoint}.tmp`, await trainer.checkpoint());
      await rename(`${values.checkpoint}.tmp`, values.checkpoint);
    };
    let lastStep = trainer.step;
    const progress = (p: TrainProgress) => {
      if (p.step === lastStep || p.phase !== 'optimizer') return;
      lastStep = p.step;
      if (values.json) say({ step: p.step, total: p.total, loss: p.loss, val_loss: p.valLoss, tokens_per_s: speed(p.tokensPerSecond), eta_s: Math.round(p.etaMs / 1000) });
      else say(`step ${p.step}/${p.total}  loss ${p.loss?.toFixed(4)}${p.valLoss !== undefined ? `  val ${p.valLoss.toFixed(4)}` : ''}  ${Math.round(p.tokensPerSecond)} tok/s  eta ${Math.round(p.etaMs / 1000)} s`);
      if (values.checkpoint && p.step % checkpointEvery === 0) void saveCheckpoint();
    };
    let result;
    try {
      result = await trainer.run({ signal: controller.signal, onProgress: progress });
    } catch (e) {
      if (e instanceof RullamaError && e.code === 'aborted') {
        await saveCheckpoint();
        throw new RullamaError('aborted', `interrupted at step ${trainer.step}${values.checkpoint ? `; the state is in ${values.checkpoint}, run again to continue` : ''}`);
      }
      throw e;
    }
    await saveCheckpoint();
    await writeFile(values.out, await trainer.exportGGUF(values.out.replace(/^.*[\\/]/, '').replace(/\.gguf$/, '')));
    // Steady speed: the steps after the first (which compiles the kernels), tokens over time.
    const later = result.stepMs.slice(1);
    const steady = later.length > 0 ? (result.stepTokens.slice(1).reduce((a, b) => a + b, 0) / later.reduce((a, b) => a + b, 0)) * 1000 : result.tokensPerSecond;
    const summary = {
      out: values.out, steps: result.steps, loss: result.loss, val_loss: result.valLoss, tokens_per_s: speed(result.tokensPerSecond),
      tokens_per_s_steady: speed(steady), step_ms: result.stepMs.map((x) => Math.round(x)),
      tokens: result.tokens, train_ms: Math.round(result.ms), setup_ms: Math.round(setupMs), gpu_bytes: model.gpuBytes + trainer.gpuBytes,
      parameters: trainer.layout.parameterCount, rank: trainer.layout.rank, alpha: trainer.layout.alpha,
      targets: [...new Set(trainer.layout.slots.map((s) => s.target))], sequences: trainer.sequenceCount, examples: trainSet.length,
      validation_examples: validation.length, skipped_lines: parsed.problems.length, skipped_steps: result.skippedSteps, adapter: description,
      loss_curve: result.history,
    };
    return summary;
  } finally {
    process.off('SIGINT', onSignal);
    trainer?.dispose();
    model?.destroy();
    await source.close();
  }
}
