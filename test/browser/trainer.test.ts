// <rullama-trainer> on the embedded demo model (a 17.7 M-parameter Gemma 4), in the worker that
// also runs the chats: kept tiny (rank 4, two targets, three short examples, three steps) because
// a training step takes about 30 s on SwiftShader on a loaded 2-core machine.
import { expect, oneEvent, waitUntil } from '@open-wc/testing';
import { RullamaClient } from '../../src/client/client.js';
import { TrainedAdapter } from '../../src/client/training.js';
import { Engine } from '../../src/core/engine.js';
import { blobSource } from '../../src/core/gguf/source.js';
import { readLoraGGUF } from '../../src/core/lora/adapter.js';
import type { RullamaChat } from '../../src/elements/chat/chat.js';
import { defineElements } from '../../src/elements/define.js';
import type { RullamaTrainDoneEvent } from '../../src/elements/events/train-done.js';
import type { RullamaTrainProgressDetail } from '../../src/elements/events/train-progress.js';
import type { RullamaTrainer } from '../../src/elements/trainer/trainer.js';
import { loadCheckpoint } from '../../src/web/checkpoints.js';

defineElements();

const MODEL = '/models/demo/rullama-demo.gguf';
const modelKey = `url:${new URL(MODEL, location.href).href}`;
const client = () => RullamaClient.shared();

// Lines 2 and 4 are bad and must be reported with their line numbers; 1, 3 and 5 are used.
const DATA = [
  JSON.stringify({ messages: [{ role: 'user', content: 'What is the secret word?' }, { role: 'assistant', content: 'The secret word is lantern.' }] }),
  '{"messages": [not json',
  JSON.stringify({ messages: [{ role: 'user', content: 'Who guards the bridge?' }, { role: 'assistant', content: 'An old grey heron guards the bridge.' }] }),
  JSON.stringify({ prompt: 'no completion here' }),
  JSON.stringify({ messages: [{ role: 'user', content: 'Where does the river go?' }, { role: 'assistant', content: 'The river goes down to the sea.' }] }),
].join('\n');

function makeTrainer(attrs: Record<string, string>, data = DATA): RullamaTrainer {
  const el = document.createElement('rullama-trainer');
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.data = data;
  return el;
}

const BASE = { model: MODEL, rank: '4', alpha: '8', 'learning-rate': '0.01', 'batch-size': '1', 'max-length': '48', targets: 'q,v', seed: '3', 'warmup-steps': '0' };

/** Resolves at the first progress event whose step reaches `step`. */
const stepReached = (el: HTMLElement, step: number) =>
  new Promise<RullamaTrainProgressDetail>((resolve) => {
    const on = (e: Event) => {
      const d = (e as CustomEvent<RullamaTrainProgressDetail>).detail;
      if (d.step >= step) {
        el.removeEventListener('rullama-train-progress', on);
        resolve(d);
      }
    };
    el.addEventListener('rullama-train-progress', on);
  });

describe('<rullama-trainer>', function () {
  this.timeout(400_000);
  const t0 = performance.now();
  afterEach(function () {
    console.log(`${this.currentTest?.title.slice(0, 40)}: ${this.currentTest?.state} at ${Math.round((performance.now() - t0) / 1000)} s`);
  });
  let trained: RullamaTrainer;
  let container: HTMLDivElement;

  before(() => {
    // Not a fixture(): those are removed after each test, and the trained element serves several.
    container = document.createElement('div');
    document.body.append(container);
  });

  after(async () => {
    container.remove();
    await new Promise((r) => setTimeout(r, 50));
    await waitUntil(() => !client().loadedModels.some((m) => m.key === modelKey), 'the model is released', { timeout: 10_000 });
  });

  it('trains with the attributes, reports problems and progress, pauses and resumes, the loss falls, and passes axe', async () => {
    const el = makeTrainer({ ...BASE, steps: '3', 'validation-fraction': '0.34' });
    trained = el;
    container.append(el);
    const progress: RullamaTrainProgressDetail[] = [];
    const states: string[] = [];
    el.addEventListener('rullama-train-progress', (e) => progress.push(e.detail));
    el.addEventListener('rullama-state', (e) => states.push((e as CustomEvent).detail.state));
    const reached = stepReached(el, 1);
    const run = el.start();
    await reached;
    await el.pause();
    expect(await run).to.equal(null);
    expect(el.state).to.equal('paused');
    const pausedAt = el.progress!.step;
    expect(pausedAt).to.be.within(1, 2);

    // The data problems, with their lines; the split (three usable examples, one held out).
    expect(el.problems.map((p) => p.line)).to.deep.equal([2, 4]);
    expect(el.problems[0]!.reason).to.match(/JSON/);
    expect(el.info).to.include({ examples: 3, trainExamples: 2, validationExamples: 1, totalSteps: 3, restored: false });
    const shown = el.shadowRoot!.querySelector('[part="problems"]')!.textContent!;
    expect(shown).to.contain('Line 2:').and.to.contain('Line 4:');

    const before = progress.length;
    const done = oneEvent(el, 'rullama-train-done');
    const result = await el.resume();
    const { detail } = (await done) as RullamaTrainDoneEvent;
    expect(result).to.deep.equal(detail);
    // Resumed where it paused: the first step finished after the resume is the next one.
    const afterResume = progress.slice(before);
    const firstNewStep = afterResume.find((p) => p.step > pausedAt)!.step;
    expect(firstNewStep).to.equal(pausedAt + 1);
    expect(afterResume.every((p) => p.step >= pausedAt)).to.equal(true);
    expect(detail.steps).to.equal(3);
    expect(detail.history.map((h) => h.step)).to.deep.equal([1, 2, 3]);
    expect(detail.val_loss).to.be.a('number');
    expect(detail.history.at(-1)!.val_loss).to.equal(detail.val_loss);
    // The loss falls: the validation loss (the same held-out example each step; the training
    // loss of a batch of one changes with the example) is measured after every step of three.
    const val = detail.history.map((h) => h.val_loss!);
    expect(val.every((v) => Number.isFinite(v))).to.equal(true);
    expect(val[2]!).to.be.lessThan(val[1]!);
    expect(val[1]!).to.be.lessThan(val[0]!);
    expect(detail.tokens_per_s).to.be.greaterThan(0);

    // Every progress detail has every field; every step's end was reported.
    const p = progress.at(-1)!;
    expect(Object.keys(p).sort()).to.deep.equal(['eta', 'layer', 'loss', 'phase', 'step', 'tokens_per_s', 'total', 'val_loss']);
    expect(p).to.include({ step: 3, total: 3 });
    for (let s = 1; s <= 3; s++) expect(progress.some((q) => q.step === s && q.loss !== null)).to.equal(true, `step ${s} reported`);
    expect(progress.some((q) => q.phase === 'backward')).to.equal(true);
    expect(progress.some((q) => q.val_loss !== null)).to.equal(true);
    expect(states).to.include.members(['loading', 'preparing', 'training', 'paused', 'done']);
    expect(el.state).to.equal('done');
    expect(el.history.length).to.equal(3);
    // The chart drew (uPlot's canvas inside the shadow root).
    expect(el.shadowRoot!.querySelector('.plot canvas')).to.exist;
    await expect(el).to.be.accessible();
  });

  it('exports a LoRA GGUF the core reads, with the chosen rank and targets', async () => {
    const blob = await trained.exportAdapter();
    expect((blob as File).name).to.equal('rullama-lora.gguf');
    const adapter = await readLoraGGUF(blobSource(blob));
    const tensors = [...adapter.tensors.values()];
    expect(tensors.length).to.be.greaterThan(0);
    expect(new Set(tensors.map((t) => t.rank))).to.deep.equal(new Set([4]));
    expect(new Set(tensors.map((t) => t.base.replace(/^blk\.\d+\./, '')))).to.deep.equal(new Set(['attn_q.weight', 'attn_v.weight']));
    expect(adapter.alpha).to.equal(8);
  });

  it('"Use in chat" gives a chat on the same model the adapter: its greedy answer becomes the core\'s with that adapter', async () => {
    const chat = document.createElement('rullama-chat') as RullamaChat;
    for (const [k, v] of Object.entries({ model: MODEL, temperature: '0', 'max-tokens': '12', headless: '' })) chat.setAttribute(k, v);
    const other = document.createElement('rullama-chat') as RullamaChat; // another model: untouched
    for (const [k, v] of Object.entries({ model: '/test-output/fixtures/tiny-e2b.gguf', headless: '' })) other.setAttribute(k, v);
    container.append(chat, other);
    const question = 'What is the secret word?';
    const plain = (await chat.send(question))!.content;
    chat.messages = [];

    const applied = oneEvent(trained, 'rullama-adapter-applied');
    const chats = await trained.useInChat();
    expect(chats).to.deep.equal([chat]);
    expect((await applied).detail.chats).to.deep.equal([chat]);
    expect(chat.adapters[0]!.source).to.be.instanceOf(TrainedAdapter);
    expect(other.adapters).to.deep.equal([]);
    const tuned = (await chat.send(question))!.content;

    // The core, on this page's thread, with the exported adapter: the same greedy answer.
    const blob = await trained.exportAdapter();
    const engine = await Engine.load(await (await fetch(MODEL)).blob(), { gpu: navigator.gpu });
    try {
      await engine.setAdapters([{ adapter: await engine.loadAdapter(blob), scale: 1 }]);
      const expected = (await engine.chat([{ role: 'user', content: question }], { temperature: 0, maxTokens: 12 }).result).text;
      expect(tuned).to.equal(expected);
    } finally {
      await engine.dispose();
    }
    expect(tuned).to.not.equal(plain);
    chat.remove();
    other.remove();
  });

  it('checkpoints to OPFS: a fresh element continues at the saved step; cancel drops the job and its checkpoint', async () => {
    const attrs = { ...BASE, steps: '4', checkpoint: '', seed: '9' };
    const first = makeTrainer(attrs);
    container.append(first);
    const reached = stepReached(first, 1);
    const run = first.start();
    await reached;
    await first.pause();
    await run;
    const saved = first.progress!.step;
    const runId = first.info!.runId;
    expect(await loadCheckpoint(runId)).to.not.equal(null);
    first.remove();
    await new Promise((r) => setTimeout(r, 20));

    const second = makeTrainer(attrs);
    container.append(second);
    const steps: number[] = [];
    second.addEventListener('rullama-train-progress', (e) => steps.push(e.detail.step));
    const training = new Promise<void>((resolve) => second.addEventListener('rullama-state', (e) => (e as CustomEvent).detail.state === 'training' && resolve()));
    const resumed = second.start();
    await training;
    expect(second.info).to.include({ restored: true, step: saved, runId });
    await waitUntil(() => steps.length > 0, 'progress after the restore', { timeout: 60_000 });
    // The restored run starts at the saved step (not at 0).
    expect(Math.min(...steps)).to.equal(saved);
    expect(second.history.slice(0, saved).map((h) => h.step)).to.deep.equal(Array.from({ length: saved }, (_, i) => i + 1));
    const cancelStates: string[] = [];
    second.addEventListener('rullama-state', (e) => cancelStates.push((e as CustomEvent).detail.state));
    await second.cancel();
    expect(await resumed).to.equal(null);
    expect(second.state).to.equal('idle');
    expect(second.hasJob).to.equal(false);
    expect(second.progress).to.equal(null);
    expect(cancelStates).to.not.include('paused');
    expect(await loadCheckpoint(runId)).to.equal(null);
    let code = '';
    await second.exportAdapter().catch((e) => (code = e.code));
    expect(code).to.equal('bad-argument');
    second.remove();
  });

  it('reports a dataset with no usable line, with the problems, as an error', async () => {
    const el = makeTrainer(BASE, '{"text": ""}\nnot json at all');
    container.append(el);
    const error = oneEvent(el, 'rullama-error');
    let code = '';
    await el.start().catch((e) => (code = e.code));
    expect(code).to.equal('bad-argument');
    expect((await error).detail.code).to.equal('bad-argument');
    expect(el.state).to.equal('error');
    expect(el.problems.map((p) => p.line)).to.deep.equal([1, 2]);
    await expect(el).to.be.accessible();
    el.remove();
    trained.remove();
  });
});
