import { expect } from '@open-wc/testing';
import { readGGUF } from '../../src/core/gguf/read.js';
import { urlSource } from '../../src/core/gguf/source.js';
import { openDevice } from '../../src/core/gpu/device.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';

// Written by scripts/test-fixtures.ts before the browser suite runs.
const FIXTURES = '/test-output/fixtures';
const PROMPT =
  'In the morning the fishermen pull their boats onto the sand, mend the nets, and tell each other about the storm that came over the hills last night, when the wind broke two masts.';

function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('Gemma 4 forward pass on Chromium WebGPU', () => {
  for (const name of ['tiny-e2b', 'tiny-kquant']) {
    it(`${name}: GPU logits match the float64 reference, and decode equals prefill`, async () => {
      const { device } = await openDevice({ gpu: navigator.gpu });
      try {
        const source = await urlSource(`${FIXTURES}/${name}.gguf`);
        const file = await readGGUF(source);
        const tokens = Tokenizer.fromGGUF(file).encode(PROMPT);
        expect(tokens.length).to.be.greaterThan(2 * (file.metadata.get('gemma4.attention.sliding_window') as number));
        const prefill = await Gemma4Model.load(device, source, { contextSize: 48, prefillChunk: 16, allLogits: true });
        const gpuLogits = await prefill.feed(tokens, { logits: 'all' });
        prefill.destroy();
        const reference = await (await ReferenceModel.load(source, file)).forward(tokens);
        const precision = Math.max(...tokens.map((_, p) => relativeL2(gpuLogits[p]!, reference[p]!)));
        expect(precision).to.be.at.most(1e-3);
        const decode = await Gemma4Model.load(device, source, { contextSize: 48, prefillChunk: 16 });
        let worst = 0;
        for (const [p, token] of tokens.entries()) worst = Math.max(worst, relativeL2((await decode.feed([token]))[0]!, gpuLogits[p]!));
        decode.destroy();
        expect(worst).to.be.at.most(1e-4);
        console.log(`${name}: ${tokens.length} tokens, relative L2 vs float64 ${precision.toExponential(2)}, decode vs prefill ${worst.toExponential(2)}`);
      } finally {
        device.destroy();
      }
    });
  }
});
