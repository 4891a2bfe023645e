import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it, test } from 'node:test';
import { RullamaError } from '../../src/core/errors.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import type { GGUFFile, GGUFValue } from '../../src/core/gguf/types.js';
import { BpeModel } from '../../src/core/tokenizer/bpe.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { readVocab } from '../../src/core/tokenizer/vocab.js';
import { generateCorpus, rng } from '../corpus/generate.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/gemma4-vocab/', import.meta.url));
const VOCAB = FIXTURES + 'ggml-vocab-gemma-4.gguf';
const HAVE = existsSync(VOCAB);
const skip = HAVE ? false : `fixture ${VOCAB} not found`;

let file: GGUFFile;
let tok: Tokenizer;
let buildMs = 0;
if (HAVE) {
  const src = await nodeFileSource(VOCAB);
  try {
    file = await readGGUF(src);
  } finally {
    await src.close();
  }
  const t0 = performance.now();
  tok = Tokenizer.fromGGUF(file);
  buildMs = performance.now() - t0;
}

const id = (s: string): number => {
  const v = tok.tokenId(s);
  assert.notEqual(v, undefined, `no token ${JSON.stringify(s)}`);
  return v!;
};
const enc = (s: string): number[] => tok.encode(s, { addBos: false });

/** A GGUFFile with the fixture's metadata, edited. */
function withMeta(edit: (m: Map<string, GGUFValue>) => void): GGUFFile {
  const m = new Map(file.metadata);
  edit(m);
  return { ...file, metadata: m };
}

const expectCode = (code: string) => (e: unknown) => e instanceof RullamaError && e.code === code;

describe('Tokenizer.fromGGUF', { skip }, () => {
  it('builds the 262,144-token / 514,906-merge vocabulary quickly (< 3 s)', () => {
    assert.ok(buildMs < 3000, `build took ${buildMs.toFixed(0)} ms`);
    const s = tok.summary();
    assert.equal(s.model, 'gemma4');
    assert.equal(s.vocabSize, 262144);
    assert.equal(s.merges, 514906);
    assert.equal(s.bos, id('<bos>'));
    assert.equal(s.eos, id('<eos>'));
    assert.equal(s.addBos, true);
    assert.ok(s.specialTokens >= 20);
    assert.equal(tok.vocabSize, 262144);
  });

  it('accepts tokenizer.ggml.model = "llama" when the architecture is gemma4 (Ollama blobs)', () => {
    const t = Tokenizer.fromGGUF(withMeta((m) => m.set('tokenizer.ggml.model', 'llama')));
    assert.deepEqual(t.encode('hello world', { addBos: false }), [23391, 1902]);
    assert.equal(t.summary().model, 'llama');
  });

  it('rejects other tokenizers with "unsupported"', () => {
    assert.throws(() => Tokenizer.fromGGUF(withMeta((m) => m.set('tokenizer.ggml.model', 'bert'))), expectCode('unsupported'));
    assert.throws(
      () => Tokenizer.fromGGUF(withMeta((m) => (m.set('tokenizer.ggml.model', 'llama'), m.set('general.architecture', 'llama')))),
      expectCode('unsupported'),
    );
  });

  it('rejects missing or mismatched arrays with "bad-gguf"', () => {
    const cases: Array<[string, (m: Map<string, GGUFValue>) => void]> = [
      ['no model', (m) => m.delete('tokenizer.ggml.model')],
      ['no tokens', (m) => m.delete('tokenizer.ggml.tokens')],
      ['tokens not strings', (m) => m.set('tokenizer.ggml.tokens', new Int32Array(4))],
      ['no merges', (m) => m.delete('tokenizer.ggml.merges')],
      ['merges not strings', (m) => m.set('tokenizer.ggml.merges', new Float32Array(3))],
      ['short token_type', (m) => m.set('tokenizer.ggml.token_type', new Int32Array(10).fill(1))],
      ['short scores', (m) => m.set('tokenizer.ggml.scores', new Float32Array(10))],
      ['token_type wrong kind', (m) => m.set('tokenizer.ggml.token_type', ['1'])],
      ['bos out of range', (m) => m.set('tokenizer.ggml.bos_token_id', 1 << 20)],
    ];
    for (const [name, edit] of cases) {
      assert.throws(() => Tokenizer.fromGGUF(withMeta(edit)), expectCode('bad-gguf'), name);
    }
  });
});

describe('encode: llama.cpp test-tokenizer-0 cases (tokenizer-cases.inp/.out)', { skip }, () => {
  // .inp: cases separated by "\n__ggml_vocab_test__\n" (no trailing separator in this file);
  // .out: one line per case, space-separated ids without BOS (an empty line for "").
  const inp = HAVE ? readFileSync(FIXTURES + 'tokenizer-cases.inp', 'utf8') : '';
  const out = HAVE ? readFileSync(FIXTURES + 'tokenizer-cases.out', 'utf8') : '';
  const SEP = '\n__ggml_vocab_test__\n';
  const cases = inp.endsWith(SEP) ? inp.slice(0, -SEP.length).split(SEP) : inp.split(SEP);
  const lines = out.split('\n');
  if (lines.at(-1) === '') lines.pop();

  it('has as many expected lines as cases', () => {
    assert.equal(cases.length, 46);
    assert.equal(lines.length, cases.length);
  });
  cases.forEach((text, i) => {
    it(`case ${i + 1}: ${JSON.stringify(text).slice(0, 60)}`, () => {
      const expected = lines[i]!.trim() === '' ? [] : lines[i]!.trim().split(/ +/).map(Number);
      assert.deepEqual(enc(text), expected);
    });
  });
});

describe('encode: reference vectors (spec §4.2)', { skip }, () => {
  const vectors: Array<[string, number[]]> = [
    ['hello', [23391]],
    ['hello world', [23391, 1902]],
    ['Hello, World!', [9259, 236764, 4109, 236888]],
    [' hello', [29104]],
    ['  hello', [138, 23391]],
    ['hello  world', [23391, 138, 12392]],
    ['   ', [139]],
    ['\n\n', [108]],
    ['\t\t', [255969]],
    ['12345', [236770, 236778, 236800, 236812, 236810]],
    ['café résumé naïve', [123125, 236859, 118515, 120362]],
    ['你好世界', [144626, 12811]],
    ['hello 👋 world', [23391, 155818, 1902]],
  ];
  for (const [text, ids] of vectors) {
    it(JSON.stringify(text), () => assert.deepEqual(enc(text), ids));
  }
});

describe('encode: options and special tokens', { skip }, () => {
  it('adds BOS by default (llama.cpp forces add_bos for Gemma 4) and not with addBos: false', () => {
    assert.deepEqual(tok.encode('hello'), [tok.bos, 23391]);
    assert.deepEqual(tok.encode('hello', { addBos: false }), [23391]);
    assert.deepEqual(tok.encode(''), [tok.bos]);
    assert.deepEqual(tok.encode('', { addBos: false }), []);
  });

  it('splits special tokens out of text, looked up by string', () => {
    assert.deepEqual(enc('<|turn>user\nhi<turn|>'), [id('<|turn>'), ...enc('user\nhi'), id('<turn|>')]);
    assert.deepEqual(enc('<bos>x'), [tok.bos, ...enc('x')]);
    assert.deepEqual(enc('a<|"|>b<|"|>'), [...enc('a'), id('<|"|>'), ...enc('b'), id('<|"|>')]);
  });

  it('with parseSpecial: false keeps control strings as text but still splits user-defined ones', () => {
    const ids = tok.encode('<bos><|turn>', { addBos: false, parseSpecial: false });
    assert.ok(!ids.includes(tok.bos) && !ids.includes(id('<|turn>')));
    assert.equal(tok.decode(ids), '<bos><|turn>');
    assert.deepEqual(tok.encode('<|channel>', { addBos: false, parseSpecial: false }), [id('<|channel>')]);
    // <|tool_response> is user-defined in the file but control for llama.cpp (an EOG token)
    assert.notDeepEqual(tok.encode('<|tool_response>', { addBos: false, parseSpecial: false }), [id('<|tool_response>')]);
  });

  it('treats a lone surrogate like U+FFFD (what UTF-8 conversion makes of it)', () => {
    assert.deepEqual(enc('a\ud800b'), enc('a\ufffdb'));
    assert.deepEqual(enc('\udc00'), enc('\ufffd'));
  });

  it('emits a pure newline run as one token when it exists, else by BPE', () => {
    for (let n = 1; n <= 31; n++) assert.deepEqual(enc('\n'.repeat(n)), [id('\n'.repeat(n))]);
    const many = enc('\n'.repeat(70));
    assert.ok(many.length >= 2 && many.length <= 3);
    assert.equal(tok.decode(many), '\n'.repeat(70));
  });

  it('falls back to <0xNN> byte tokens for characters that are not tokens', () => {
    const text = String.fromCodePoint(0x10fffd); // private use, surely not a token
    assert.deepEqual(enc(text), [...new TextEncoder().encode(text)].map((b) => id(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)));
  });
});

describe('decode', { skip }, () => {
  // U+2581 '▁' in input text is indistinguishable from a space after encoding (as in llama.cpp)
  const corpus = generateCorpus(7, 600).filter((s) => !s.includes('\u2581'));

  it("decodes a literal '▁' in the input as a space (the encoding cannot tell them apart)", () => {
    assert.deepEqual(enc('a\u2581b'), enc('a b'));
    assert.equal(tok.decode(enc('a\u2581b')), 'a b');
  });

  it('decode(encode(x)) === x for varied text (specials shown)', () => {
    for (const s of corpus) assert.equal(tok.decode(enc(s), { skipSpecial: false }), s, JSON.stringify(s));
  });

  it('decode(encode(x)) === x without control tokens by default', () => {
    const control = /<bos>|<eos>|<pad>|<unk>|<mask>|<\|turn>|<turn\|>|<\|think\|>|<\|tool>|<tool\|>|<\|tool_response>|<\|?(image|audio|video)\|?>/;
    let n = 0;
    for (const s of corpus) {
      if (control.test(s)) continue;
      n++;
      assert.equal(tok.decode(enc(s)), s, JSON.stringify(s));
    }
    assert.ok(n > 400);
  });

  it('leaves control tokens out unless skipSpecial is false; prints user-defined ones', () => {
    const ids = tok.encode('<|turn>model\nHi<|channel>x<channel|><turn|>');
    assert.equal(tok.decode(ids), 'model\nHi<|channel>x<channel|>');
    assert.equal(tok.decode(ids, { skipSpecial: false }), '<bos><|turn>model\nHi<|channel>x<channel|><turn|>');
    assert.ok(tok.isControl(tok.bos) && tok.isControl(id('<|turn>')) && tok.isControl(id('<|tool_response>')));
    assert.ok(!tok.isControl(id('<|channel>')) && tok.isUserDefined(id('<|channel>')));
    assert.ok(!tok.isControl(id('hello')));
  });

  it('keeps a leading U+FEFF', () => {
    assert.equal(tok.decode(enc('\ufeffx')), '\ufeffx');
  });

  it('rejects ids outside the vocabulary with "bad-token"', () => {
    for (const bad of [-1, tok.vocabSize, 1.5, Number.NaN, 1e12]) {
      assert.throws(() => tok.decode([1, bad]), expectCode('bad-token'), String(bad));
      assert.throws(() => tok.tokenString(bad), expectCode('bad-token'));
      assert.throws(() => tok.createStreamDecoder().push(bad), expectCode('bad-token'));
    }
    assert.throws(() => tok.isControl(-1), expectCode('bad-token'));
  });

  it('tokenString / tokenId are inverse for ordinary tokens', () => {
    assert.equal(tok.tokenString(23391), 'hello');
    assert.equal(tok.tokenId('hello'), 23391);
    assert.equal(tok.tokenString(29104), '▁hello');
    assert.equal(tok.tokenId('no such token, surely'), undefined);
  });
});

describe('streaming decode', { skip }, () => {
  const byte = (b: number): number => id(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);

  function stream(ids: readonly number[]): { pieces: string[]; text: string } {
    const d = tok.createStreamDecoder();
    const pieces = ids.map((i) => d.push(i));
    pieces.push(d.flush());
    return { pieces, text: pieces.join('') };
  }

  it('holds back a character split over byte tokens until it is complete', () => {
    const bytes = [...new TextEncoder().encode('😀')];
    const { pieces, text } = stream(bytes.map(byte));
    assert.deepEqual(pieces, ['', '', '', '😀', '']);
    assert.equal(text, '😀');
  });

  it('never shows U+FFFD for emoji / CJK / rare characters spelled in byte tokens', () => {
    const r = rng(3);
    const pool = ['🧑🏿‍🚀', '👨‍👩‍👧‍👦', '漢字', '𠜎𠜱', '한국어', 'ไทย', 'é', '\u{10fffd}', '\u{e0041}', '\u{1fae8}'];
    for (let k = 0; k < 200; k++) {
      let text = '';
      for (let i = 0; i < 1 + Math.floor(r() * 6); i++) text += pool[Math.floor(r() * pool.length)]! + (r() < 0.3 ? ' ' : '');
      // tokens as the model could emit them: mixed normal tokens and raw bytes
      const ids: number[] = [];
      for (const ch of text) {
        if (r() < 0.5) ids.push(...enc(ch));
        else ids.push(...[...new TextEncoder().encode(ch)].map(byte));
      }
      const { pieces, text: joined } = stream(ids);
      for (const p of pieces) assert.ok(!p.includes('\ufffd'), `U+FFFD in ${JSON.stringify(p)} for ${JSON.stringify(text)}`);
      assert.equal(joined, text);
    }
  });

  it('streams encoded corpus text exactly', () => {
    let byteTokens = 0;
    for (const s of generateCorpus(11, 300)) {
      const ids = enc(s);
      byteTokens += ids.filter((i) => /^<0x[0-9A-F]{2}>$/.test(tok.tokenString(i))).length;
      assert.equal(stream(ids).text, tok.decode(ids));
    }
    assert.ok(byteTokens > 0, 'the corpus should exercise byte fallback');
  });

  it('emits U+FFFD only for bytes that can never form a character', () => {
    assert.deepEqual(stream([byte(0xff)]).text, '\ufffd');
    const trunc = stream([byte(0xf0), byte(0x9f)]);
    assert.deepEqual(trunc.pieces, ['', '', '\ufffd']);
    assert.equal(stream([byte(0xe4), ...enc('a')]).text, '\ufffda');
  });

  it('can be reused after flush', () => {
    const d = tok.createStreamDecoder();
    d.push(byte(0xf0));
    assert.equal(d.flush(), '\ufffd');
    assert.equal(d.push(id('hello')), 'hello');
  });
});

test('BPE: heap merging and array merging agree', { skip }, () => {
  const bpe = new BpeModel(readVocab(file), file.metadata.get('tokenizer.ggml.merges') as string[]);
  const r = rng(5);
  const words = generateCorpus(13, 400).map((s) => s.replaceAll(' ', '▁').replaceAll('\n', ''));
  for (let k = 0; k < 400; k++) {
    let w = words[k]!;
    if (w.length < 2) continue;
    if (r() < 0.5) w = w.slice(0, 2 + Math.floor(r() * 60));
    const sym = Array.from(w, (ch) => tok.tokenId(ch) ?? -1);
    if (sym.includes(-1)) continue;
    assert.deepEqual(bpe.mergeHeap(sym), bpe.mergeSmall(sym), JSON.stringify(w));
  }
});
