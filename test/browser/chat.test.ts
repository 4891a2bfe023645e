import { expect, fixture, html, oneEvent, waitUntil } from '@open-wc/testing';
import { sendKeys } from '@web/test-runner-commands';
import { RullamaClient, type AdapterInput } from '../../src/client/client.js';
import { setOllamaFolder } from '../../src/client/ollama-folder.js';
import { OllamaMediaType } from '../../src/core/ollama/index.js';
import type { ChatMessage } from '../../src/core/chat/index.js';
import type { RullamaChat } from '../../src/elements/chat/chat.js';
import { defineElements } from '../../src/elements/define.js';
import type { RullamaChatState } from '../../src/elements/events/state.js';
import type { RullamaModel } from '../../src/elements/model/model.js';

defineElements();

// Written by scripts/test-fixtures.ts before the browser suite runs; served with HTTP Range.
const MODEL = '/test-output/fixtures/tiny-e2b.gguf';
// LoRA adapters for it (scripts/test-fixtures.ts): one that fits, one made for wider weights.
const ADAPTER = '/test-output/fixtures/tiny-e2b-lora.gguf';
const MISFIT = '/test-output/fixtures/tiny-e2b-lora-misfit.gguf';
const modelKey = `url:${new URL(MODEL, location.href).href}`;
const client = () => RullamaClient.shared();
const refsOfModel = () => client().loadedModels.find((m) => m.key === modelKey)?.refs ?? 0;

/** Every event a chat fires, in order, with its detail. */
function record(el: HTMLElement) {
  const events: { type: string; detail: any }[] = [];
  for (const type of ['rullama-load-progress', 'rullama-ready', 'rullama-send', 'rullama-token', 'rullama-message', 'rullama-state', 'rullama-cancel', 'rullama-error']) {
    el.addEventListener(type, (e) => events.push({ type, detail: (e as CustomEvent).detail }));
  }
  return {
    events,
    of: (type: string) => events.filter((e) => e.type === type).map((e) => e.detail),
    states: () => events.filter((e) => e.type === 'rullama-state').map((e) => e.detail.state as RullamaChatState),
  };
}

const shadow = (el: HTMLElement) => el.shadowRoot!;

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('<rullama-chat>', () => {
  let keepAlive: RullamaModel | null = null;

  after(async () => {
    keepAlive?.remove();
    await new Promise((r) => setTimeout(r, 10));
    expect(client().loadedModels).to.deep.equal([]);
  });

  it('loads a model in the worker, answers with every event and detail, and passes axe', async () => {
    const container = await fixture<HTMLDivElement>(html`<div></div>`);
    const el = document.createElement('rullama-chat');
    const log = record(container);
    el.setAttribute('model', MODEL);
    el.setAttribute('context-size', '64');
    el.setAttribute('max-tokens', '3');
    el.setAttribute('temperature', '0.8');
    el.setAttribute('seed', '11');
    el.setAttribute('system-prompt', 'You are brief.');
    el.setAttribute('autoload', '');
    const ready = oneEvent(el, 'rullama-ready');
    container.append(el);
    expect(el.state).to.equal('loading');
    const { detail } = await ready;
    expect(detail.model).to.include({ name: 'tiny-e2b.gguf', architecture: 'gemma4', contextSize: 64 });
    expect(el.modelInfo).to.deep.equal(detail.model);
    const phases = [...new Set(log.of('rullama-load-progress').map((p) => p.phase))];
    // Downloaded into the OPFS cache (or found there), then read from disk onto the GPU.
    expect(phases.slice(-5)).to.deep.equal(['cached', 'open', 'weights', 'kernels', 'ready']);
    const weights = log.of('rullama-load-progress').filter((p) => p.phase === 'weights');
    expect(weights[weights.length - 1].loaded).to.equal(weights[weights.length - 1].total);
    expect(el.getAttribute('state')).to.equal('idle');

    // Keep the weights loaded for the other tests (same URL: the same model in the worker).
    keepAlive = document.createElement('rullama-model');
    keepAlive.setAttribute('src', MODEL);
    document.body.append(keepAlive);
    await keepAlive.load();
    expect(refsOfModel()).to.equal(2);

    const answer = await el.send('Hello there');
    expect(answer!.role).to.equal('assistant');
    expect(el.messages).to.deep.equal([{ role: 'user', content: 'Hello there' }, answer]);
    const tokens = log.of('rullama-token');
    expect(tokens).to.have.length(3);
    for (const t of tokens) expect(t).to.have.keys(['id', 'text', 'logprob']);
    expect(log.of('rullama-send')).to.deep.equal([{ text: 'Hello there' }]);
    const [message] = log.of('rullama-message');
    expect(message.message).to.deep.equal(answer);
    expect(message.stats.generatedTokens).to.equal(3);
    expect(message.stats.stoppedBy).to.equal('max-tokens');
    expect(el.stats).to.deep.equal(message.stats);
    expect(log.states()).to.deep.equal(['loading', 'idle', 'prefill', 'generating', 'idle']);
    for (const e of log.of('rullama-state')) expect(e).to.have.keys(['state', 'previous']);

    await el.updateComplete;
    const root = shadow(el);
    expect(root.querySelectorAll('[part~=message]')).to.have.length(2);
    expect(root.querySelector('[part~=message-user]')!.textContent).to.contain('Hello there');
    expect(root.querySelector('[role=status]')!.textContent).to.contain('Assistant:');
    expect(root.querySelector('[part=stats]')!.textContent).to.match(/3 tokens · [\d.]+ tokens\/s · first token after \d+ ms/);
    await expect(el).to.be.accessible();
    el.remove();
    await waitUntil(() => refsOfModel() === 1, 'the chat released the model');
  });

  it('reads attributes into properties, reflects its state, hides its UI when headless', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat model="/x.gguf" ollama-model="gemma4:e2b" system-prompt="Be kind." temperature="0.5" top-k="40" top-p="0.9" min-p="0.05" max-tokens="7" seed="3" context-size="128" repetition-penalty="1.1" thinking placeholder="Say it" overflow="error"></rullama-chat>`);
    expect(el.model).to.equal('/x.gguf');
    expect(el.ollamaModel).to.equal('gemma4:e2b');
    expect(el.systemPrompt).to.equal('Be kind.');
    expect([el.temperature, el.topK, el.topP, el.minP, el.maxTokens, el.seed, el.contextSize, el.repetitionPenalty]).to.deep.equal([0.5, 40, 0.9, 0.05, 7, 3, 128, 1.1]);
    expect(el.thinking).to.equal(true);
    expect(el.overflow).to.equal('error');
    expect(el.autoload).to.equal(false);
    expect(el.getAttribute('state')).to.equal('idle');
    expect(shadow(el).querySelector('textarea')!.placeholder).to.equal('Say it');
    expect(shadow(el).querySelector('[part=load-button]')!.textContent).to.equal('Load the model');
    el.messages = [{ role: 'user', content: 'hi' }, { role: 'assistant', content: '**bold**' }];
    await el.updateComplete;
    expect(shadow(el).querySelector('[part~=message-assistant] strong')!.textContent).to.equal('bold');
    el.headless = true;
    await el.updateComplete;
    expect(el.hasAttribute('headless')).to.equal(true);
    expect(getComputedStyle(el).display).to.equal('none');
    expect(shadow(el).querySelector('textarea')).to.equal(null);
  });

  it('lets a rullama-send listener veto or rewrite the message; Enter sends, Shift+Enter does not', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat model=${MODEL} max-tokens="2" seed="1" autoload></rullama-chat>`);
    await oneEvent(el, 'rullama-ready');
    const veto = (e: Event) => e.preventDefault();
    el.addEventListener('rullama-send', veto);
    expect(await el.send('no')).to.equal(null);
    expect(el.messages).to.deep.equal([]);
    el.removeEventListener('rullama-send', veto);
    el.addEventListener('rullama-send', (e) => (e.detail.text = e.detail.text.toUpperCase()), { once: true });

    const textarea = shadow(el).querySelector('textarea')!;
    textarea.focus();
    await sendKeys({ type: 'line one' });
    await sendKeys({ down: 'Shift' });
    await sendKeys({ press: 'Enter' });
    await sendKeys({ up: 'Shift' });
    await sendKeys({ type: 'line two' });
    expect(el.messages).to.deep.equal([]);
    const done = oneEvent(el, 'rullama-message');
    await sendKeys({ press: 'Enter' });
    await done;
    expect(el.messages[0]).to.deep.equal({ role: 'user', content: 'LINE ONE\nLINE TWO' });
    expect(textarea.value).to.equal('');
  });

  it('cancels mid-prefill and mid-generation, keeps the partial answer, and stays usable', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat model=${MODEL} max-tokens="8" seed="5" temperature="0.9" autoload></rullama-chat>`);
    await oneEvent(el, 'rullama-ready');
    const log = record(el);

    // Stop as soon as the prompt is being read: no token comes.
    el.addEventListener('rullama-state', (e) => e.detail.state === 'prefill' && el.stop(), { once: true });
    expect(await el.send('A long question about the tides and the moon, and the boats in the harbour at dusk.')).to.equal(null);
    expect(log.of('rullama-cancel')).to.deep.equal([{ reason: 'stop', partial: '' }]);
    expect(log.of('rullama-token')).to.have.length(0);
    expect(el.messages).to.have.length(1);
    expect(el.state).to.equal('idle');

    // Stop after the first token: the answer so far is kept.
    el.addEventListener('rullama-token', () => el.stop(), { once: true });
    expect(await el.send('And then?')).to.equal(null);
    const cancel = log.of('rullama-cancel')[1];
    expect(cancel.reason).to.equal('stop');
    expect(cancel.partial).to.equal(log.of('rullama-token')[0].text);
    expect(log.of('rullama-token').length).to.be.below(4);
    expect(el.messages.length).to.equal(cancel.partial.trim() ? 3 : 2);
    expect(log.states().slice(-3)).to.deep.equal(['prefill', 'generating', 'idle']);

    // Escape stops too; a send while answering supersedes the answer.
    el.addEventListener('rullama-token', () => void el.send('Never mind.'), { once: true });
    await el.send('Tell me more.');
    await waitUntil(() => el.state === 'idle' && log.of('rullama-message').length === 1, 'the second send answered', { timeout: 60000 });
    expect(log.of('rullama-cancel')[2].reason).to.equal('superseded');
    expect(el.messages.filter((m) => m.role === 'user').map((m) => m.content).slice(-2)).to.deep.equal(['Tell me more.', 'Never mind.']);
    expect(el.messages[el.messages.length - 1]!.role).to.equal('assistant');
  });

  it('two chats on one page share one model and keep separate conversations', async () => {
    const container = await fixture<HTMLDivElement>(html`
      <div>
        <rullama-model id="shared-model" src=${MODEL} context-size="64"></rullama-model>
        <rullama-chat id="left" model-ref="shared-model" max-tokens="2" seed="2" autoload></rullama-chat>
        <rullama-chat id="right" model-ref="shared-model" max-tokens="3" seed="9" context-size="48" autoload></rullama-chat>
      </div>`);
    const [left, right] = [...container.querySelectorAll('rullama-chat')] as RullamaChat[];
    await waitUntil(() => left!.modelInfo && right!.modelInfo, 'both chats ready');
    expect(refsOfModel()).to.equal(4); // keep-alive, the model element, two chats
    expect(client().loadedModels).to.have.length(1);
    const [a, b] = await Promise.all([left!.send('Left question'), right!.send('Right question')]);
    expect(left!.messages).to.deep.equal([{ role: 'user', content: 'Left question' }, a]);
    expect(right!.messages).to.deep.equal([{ role: 'user', content: 'Right question' }, b]);
    expect(left!.stats!.generatedTokens).to.equal(2);
    expect(right!.stats!.generatedTokens).to.equal(3);
    // Each conversation kept its own cache: a follow-up reads only its new turn.
    const firstPrompt = left!.stats!.promptTokens;
    await right!.send('Right again');
    await left!.send('More');
    expect(left!.stats!.reusedTokens).to.be.at.least(firstPrompt);
    container.remove();
    await waitUntil(() => refsOfModel() === 1, 'the elements released the model');
  });

  it('saves a conversation with its KV cache and restores it without reading it again', async () => {
    const a = await fixture<RullamaChat>(html`<rullama-chat model=${MODEL} max-tokens="2" seed="4" autoload></rullama-chat>`);
    await oneEvent(a, 'rullama-ready');
    await a.send('Remember the word lighthouse.');
    const firstPrompt = a.stats!.promptTokens;
    await a.saveConversation('round-trip');
    const saved = a.messages;
    a.remove();

    // Restored before the model is loaded: applied when it is.
    const b = await fixture<RullamaChat>(html`<rullama-chat model=${MODEL} max-tokens="2" seed="4"></rullama-chat>`);
    expect(await b.restoreConversation('round-trip')).to.equal(true);
    expect(b.messages).to.deep.equal(saved);
    await b.load();
    await b.send('Which word?');
    expect(b.stats!.reusedTokens).to.be.at.least(firstPrompt - 1);
    expect(b.stats!.prefilledTokens).to.be.below(b.stats!.promptTokens - firstPrompt + 8);

    // Restored into a loaded chat.
    const c = await fixture<RullamaChat>(html`<rullama-chat model=${MODEL} max-tokens="2" seed="4" autoload></rullama-chat>`);
    await oneEvent(c, 'rullama-ready');
    expect(await c.restoreConversation('round-trip')).to.equal(true);
    await c.send('Which word?');
    expect(c.stats!.reusedTokens).to.be.at.least(firstPrompt - 1);
    expect(await c.restoreConversation('nothing-saved-here')).to.equal(false);
  });

  it('reports no WebGPU with an explanation and a retry, and passes axe', async () => {
    const descriptor = Object.getOwnPropertyDescriptor(Navigator.prototype, 'gpu')!;
    Object.defineProperty(Navigator.prototype, 'gpu', { configurable: true, get: () => undefined });
    try {
      const el = document.createElement('rullama-chat');
      el.setAttribute('model', `${MODEL}?no-webgpu`);
      el.setAttribute('autoload', '');
      const failed = oneEvent(el, 'rullama-error');
      (await fixture<HTMLDivElement>(html`<div></div>`)).append(el);
      const { detail } = await failed;
      expect(detail.code).to.equal('no-webgpu');
      await el.updateComplete;
      expect(el.state).to.equal('error');
      const panel = shadow(el).querySelector('[part=error]')!;
      expect(panel.getAttribute('role')).to.equal('alert');
      expect(panel.textContent).to.match(/Chrome or Edge 113/);
      expect(panel.querySelector('[part=error-action]')!.textContent).to.equal('Try again');
      await expect(el).to.be.accessible();
    } finally {
      Object.defineProperty(Navigator.prototype, 'gpu', descriptor);
    }
  });

  it('runs an Ollama model from the remembered models folder (an OPFS folder here)', async () => {
    const opfs = await navigator.storage.getDirectory();
    const name = `ollama-chat-${Date.now()}`;
    const root = await opfs.getDirectoryHandle(name, { create: true });
    try {
      const bytes = new Uint8Array(await (await fetch(MODEL)).arrayBuffer());
      const hex = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
      const write = async (path: string[], data: Uint8Array | string) => {
        let dir = root;
        for (const part of path.slice(0, -1)) dir = await dir.getDirectoryHandle(part, { create: true });
        const w = await (await dir.getFileHandle(path[path.length - 1]!, { create: true })).createWritable();
        await w.write(data as BufferSource | string);
        await w.close();
      };
      await write(['blobs', `sha256-${hex}`], bytes);
      await write(['manifests', 'registry.ollama.ai', 'library', 'gemma4', 'e2b'], JSON.stringify({ schemaVersion: 2, layers: [{ mediaType: OllamaMediaType.model, digest: `sha256:${hex}`, size: bytes.byteLength }] }));

      const el = await fixture<RullamaChat>(html`<rullama-chat ollama-model="gemma4:e2b" context-size="64" max-tokens="2"></rullama-chat>`);
      // No folder remembered yet: the chat asks for one with a button (the picker needs a click).
      await el.load().catch(() => {});
      await el.updateComplete;
      expect(shadow(el).querySelector('[part=load-button]')!.textContent).to.equal('Choose your Ollama models folder');
      expect(shadow(el).textContent).to.contain('~/.ollama/models');

      await setOllamaFolder(root);
      const info = await el.load();
      expect(info.name).to.equal('gemma4:e2b');
      const answer = await el.send('Hi');
      expect(answer!.role).to.equal('assistant');
      expect(el.stats!.generatedTokens).to.equal(2);
    } finally {
      await opfs.removeEntry(name, { recursive: true }).catch(() => {});
    }
  });

  it('loads a GGUF file dropped on it (a File crosses to the worker by reference)', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat context-size="64" max-tokens="2"></rullama-chat>`);
    const file = new File([await (await fetch(MODEL)).blob()], 'dropped.gguf');
    const data = new DataTransfer();
    data.items.add(file);
    const base = shadow(el).querySelector('[part=base]')!;
    const ready = oneEvent(el, 'rullama-ready');
    base.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true, composed: true }));
    expect((await ready).detail.model.name).to.equal('dropped.gguf');
    expect(el.file).to.equal(file);
    expect(client().loadedModels.some((m) => m.key.startsWith('blob:'))).to.equal(true);
    await el.send('Hi');
    expect(el.stats!.generatedTokens).to.equal(2);

    // Another model: the dropped one is freed, the conversation stays.
    el.file = null;
    el.model = MODEL;
    await el.updateComplete;
    expect(el.modelInfo).to.equal(null);
    expect(client().loadedModels.some((m) => m.key.startsWith('blob:'))).to.equal(false);
    expect((await el.load()).name).to.equal('tiny-e2b.gguf');
    expect(el.messages).to.have.length(2);
  });

  it('applies a LoRA adapter to its conversation without reloading the model, exactly as the engine does, and removes it', async () => {
    // The oracle: a conversation of the core engine (in the worker, on the same weights) given the adapter directly.
    const oracleRef = client().acquire(MODEL);
    const oracle = await oracleRef.openConversation({ contextSize: 64 });
    const greedy = async (messages: ChatMessage[], adapters: AdapterInput[]) => {
      await oracle.setAdapters(adapters); // also starts its KV cache afresh, as the chat's is
      return (await oracle.chat(messages, { temperature: 0, maxTokens: 4, overflow: 'drop-oldest', template: { thinking: false } }).result).tokens;
    };
    const ask: ChatMessage = { role: 'user', content: 'Tell me about the sea.' };
    const el = await fixture<RullamaChat>(html`<rullama-chat model=${MODEL} context-size="64" max-tokens="4" temperature="0" autoload></rullama-chat>`);
    await oneEvent(el, 'rullama-ready');
    const refs = refsOfModel();
    const log = record(el);
    const answer = async (text: string) => {
      const before = log.of('rullama-token').length;
      await el.send(text);
      return log.of('rullama-token').slice(before).map((t) => t.id as number);
    };
    const base = await answer(ask.content as string);

    // The adapter applies to the next answer, over the whole conversation: its cache starts afresh.
    el.setAttribute('adapter', ADAPTER);
    const follow: ChatMessage = { role: 'user', content: 'And the tides?' };
    const asked = [...el.messages, follow];
    const tuned = await answer(follow.content as string);
    // The worker read the file for the chat: the oracle's conversation finds it in the cache.
    expect(await oracle.setAdapters([{ source: ADAPTER }])).to.deep.equal({ read: 0 });
    expect(tuned).to.deep.equal(await greedy(asked, [{ source: ADAPTER }]));
    expect(tuned).to.not.deep.equal(await greedy(asked, []));
    expect(el.stats!.reusedTokens).to.equal(0);
    expect(el.stats!.promptTokens).to.be.above(10);

    // Half strength; then the attribute removed: the base model's answer again.
    el.setAttribute('adapter-scale', '0.5');
    await el.reset();
    const half = await answer(ask.content as string);
    expect(half).to.deep.equal(await greedy([ask], [{ source: ADAPTER, scale: 0.5 }]));
    expect(half).to.not.deep.equal(base);
    el.removeAttribute('adapter');
    await el.reset();
    expect(await answer(ask.content as string)).to.deep.equal(base);

    // The property takes Files/Blobs: the same file as a Blob, at half strength.
    el.adapters = [{ source: await (await fetch(ADAPTER)).blob(), scale: 0.5 }];
    await el.reset();
    expect(await answer(ask.content as string)).to.deep.equal(half);
    el.adapters = [];

    // No reload, no error along the way.
    expect(log.of('rullama-ready')).to.have.length(0);
    expect(log.of('rullama-load-progress')).to.have.length(0);
    expect(log.of('rullama-error')).to.have.length(0);
    expect(log.states()).to.not.include('loading');
    expect(refsOfModel()).to.equal(refs);

    // An adapter of another model: rullama-error with the core's code, and no answer until it is undone.
    el.setAttribute('adapter', MISFIT);
    const failed = await oneEvent(el, 'rullama-error');
    expect(failed.detail.code).to.equal('bad-argument');
    expect(failed.detail.message).to.match(/blk\.\d+\./);
    expect(el.state).to.equal('error');
    const tokens = log.of('rullama-token').length;
    expect((await rejection(el.send('Still there?'))).code).to.equal('bad-argument');
    expect(log.of('rullama-token')).to.have.length(tokens);
    el.removeAttribute('adapter');
    await waitUntil(() => el.state === 'idle', 'the error cleared once the adapter was removed');
    await el.reset();
    expect(await answer(ask.content as string)).to.deep.equal(base);
    el.remove();
    await oracle.close();
    oracleRef.release();
  });

  it('fails its load on a bad adapter file with the core\'s code, and loads once the adapter is fixed', async () => {
    const el = document.createElement('rullama-chat');
    el.setAttribute('model', MODEL);
    el.setAttribute('max-tokens', '2');
    el.setAttribute('autoload', '');
    el.adapters = [{ source: new Blob(['this is not a GGUF file, let alone an adapter']) }];
    const log = record(el);
    const failed = oneEvent(el, 'rullama-error');
    (await fixture<HTMLDivElement>(html`<div></div>`)).append(el);
    expect((await failed).detail.code).to.equal('bad-gguf');
    expect(el.state).to.equal('error');
    expect(log.of('rullama-ready')).to.have.length(0);
    const ready = oneEvent(el, 'rullama-ready');
    el.adapters = [{ source: ADAPTER, scale: 2 }];
    await ready;
    expect(log.states().slice(-2)).to.deep.equal(['loading', 'idle']);
    expect((await el.send('Hi'))!.role).to.equal('assistant');
    expect(el.stats!.generatedTokens).to.equal(2);
    el.remove();
  });

  it('takes replacement strings, and restyling keeps the conversation', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat></rullama-chat>`);
    el.messages = [{ role: 'user', content: 'Bonjour' }, { role: 'assistant', content: 'Salut' }];
    el.strings = { send: 'Envoyer', you: 'Vous', inputLabel: 'Votre message' };
    await el.updateComplete;
    const root = shadow(el);
    expect(root.querySelector('[part=send-button]')!.textContent).to.equal('Envoyer');
    expect(root.querySelector('label')!.textContent).to.equal('Votre message');
    expect(root.querySelector('[part~=message-user] [part=role]')!.textContent).to.equal('Vous');
    el.style.setProperty('--rullama-accent-color', 'rebeccapurple');
    el.setAttribute('theme', 'dark');
    await el.updateComplete;
    expect(getComputedStyle(root.querySelector('[part=send-button]')!).backgroundColor).to.equal('rgb(102, 51, 153)');
    expect(root.querySelectorAll('[part~=message]')).to.have.length(2);
    expect(el.messages).to.have.length(2);
  });
});
