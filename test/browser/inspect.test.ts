import { expect, fixture, html, oneEvent } from '@open-wc/testing';
import { defineElements } from '../../src/elements/define.js';
import type { RullamaInspect } from '../../src/elements/inspect/inspect.js';

defineElements();
const VOCAB_URL = '/shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf';

describe('<rullama-inspect>', () => {
  it('reads a GGUF from a URL, shows its summary and tokenizes live', async () => {
    const el = await fixture<RullamaInspect>(html`<rullama-inspect></rullama-inspect>`);
    const ready = oneEvent(el, 'rullama-inspect-ready');
    el.src = VOCAB_URL;
    const { detail } = await ready;
    expect(detail.summary.architecture).to.equal('gemma4');
    expect(detail.summary.tokenizer?.vocabSize).to.equal(262144);
    await el.updateComplete;
    const root = el.shadowRoot!;
    expect(root.querySelector('[part=summary]')!.textContent).to.contain('gemma4');
    const tokens = () => [...root.querySelectorAll('[part=token]')].map((t) => t.getAttribute('title'));
    const textarea = root.querySelector('textarea')!;
    textarea.value = 'hello world';
    textarea.dispatchEvent(new Event('input'));
    await el.updateComplete;
    expect(tokens()).to.deep.equal(['2', '23391', '1902']);
    await expect(el).to.be.accessible();
  });

  it('opens a File and reports a bad file as rullama-error without losing the element', async () => {
    const el = await fixture<RullamaInspect>(html`<rullama-inspect></rullama-inspect>`);
    const failed = oneEvent(el, 'rullama-error');
    el.open(new File([new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24])], 'junk.gguf')).catch(() => {});
    const { detail } = await failed;
    expect(detail.code).to.equal('bad-gguf');
    await el.updateComplete;
    expect(el.shadowRoot!.querySelector('[part=error]')!.textContent).to.contain('not a GGUF file');
    const blob = await (await fetch(VOCAB_URL)).blob();
    const summary = await el.open(new File([blob], 'vocab.gguf'));
    expect(summary.tensorCount).to.equal(0);
    await el.updateComplete;
    expect(el.shadowRoot!.querySelector('[part=error]')).to.equal(null);
  });

  it('takes replacement strings (i18n)', async () => {
    const el = await fixture<RullamaInspect>(html`<rullama-inspect></rullama-inspect>`);
    el.strings = { ...el.strings, pick: 'Ouvrir un fichier GGUF' };
    await el.updateComplete;
    expect(el.shadowRoot!.textContent).to.contain('Ouvrir un fichier GGUF');
  });
});
