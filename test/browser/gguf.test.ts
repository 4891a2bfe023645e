import { expect } from '@open-wc/testing';
import { RullamaError } from '../../src/core/errors.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { blobSource, urlSource } from '../../src/core/gguf/source.js';
import { fuzzGGUF } from '../shared/gguf-fuzz-case.js';

const VOCAB_URL = '/shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf';

describe('GGUF reader in Chromium', () => {
  it('reads the real vocabulary over HTTP range requests without downloading it whole', async () => {
    const ranges: string[] = [];
    const countingFetch: typeof fetch = (input, init) => {
      ranges.push(new Headers(init?.headers).get('Range') ?? 'none');
      return fetch(input, init);
    };
    const source = await urlSource(VOCAB_URL, { fetch: countingFetch });
    const file = await readGGUF(source);
    expect(file.metadata.get('general.architecture')).to.equal('gemma4');
    expect((file.metadata.get('tokenizer.ggml.tokens') as string[]).length).to.equal(262144);
    expect(ranges.every((r) => r.startsWith('bytes='))).to.equal(true);
    expect(ranges.length).to.be.greaterThan(2);
  });

  it('reads a File/Blob', async () => {
    const blob = await (await fetch(VOCAB_URL)).blob();
    const file = await readGGUF(blobSource(new File([blob], 'vocab.gguf')));
    expect(file.metadata.get('tokenizer.ggml.model')).to.equal('gemma4');
  });

  it('a URL without range support or a missing URL fails clearly', async () => {
    try {
      await urlSource('/shared/does-not-exist.gguf');
      expect.fail('expected an error');
    } catch (e) {
      expect(e).to.be.instanceOf(RullamaError);
      expect((e as RullamaError).code).to.equal('not-found');
    }
  });

  it('fuzz loop in the tab: every input parses or fails with a RullamaError', async () => {
    const report = await fuzzGGUF(99, 1000);
    expect(report.failures).to.deep.equal([]);
    expect(report.maxRead).to.be.at.most(1 << 20);
  });
});
