import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { encodeChat, renderChat, stopTokens, stripThinking, type ChatMessage } from '../../src/core/chat/index.js';
import { formatArgument, formatDeclaration } from '../../src/core/chat/format.js';
import { RullamaError } from '../../src/core/errors.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';

const VOCAB = fileURLToPath(new URL('../../../shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf', import.meta.url));
const HAVE = existsSync(VOCAB);

let tok: Tokenizer;
if (HAVE) {
  const src = await nodeFileSource(VOCAB);
  try {
    tok = Tokenizer.fromGGUF(await readGGUF(src));
  } finally {
    await src.close();
  }
}

const user = (content: string): ChatMessage => ({ role: 'user', content });
const assistant = (content: string, extra: Partial<ChatMessage> = {}): ChatMessage => ({ role: 'assistant', content, ...extra });
const system = (content: string): ChatMessage => ({ role: 'system', content });

describe('renderChat (E2B layout)', () => {
  it('single user turn', () => {
    assert.equal(renderChat([user('Hello!')]), '<bos><|turn>user\nHello!<turn|>\n<|turn>model\n');
  });

  it('trims user and system text', () => {
    assert.equal(
      renderChat([system('  Be brief.\n'), user('\n  Hi there  \n')]),
      '<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi there<turn|>\n<|turn>model\n',
    );
  });

  it('developer counts as system', () => {
    assert.equal(renderChat([{ role: 'developer', content: 'Rules' }, user('x')]), '<bos><|turn>system\nRules<turn|>\n<|turn>user\nx<turn|>\n<|turn>model\n');
  });

  it('multi-turn: assistant is rendered as model', () => {
    const prompt = renderChat([system('S'), user('Q1'), assistant('A1'), user('Q2')]);
    assert.equal(prompt, '<bos><|turn>system\nS<turn|>\n<|turn>user\nQ1<turn|>\n<|turn>model\nA1<turn|>\n<|turn>user\nQ2<turn|>\n<|turn>model\n');
  });

  it('without the generation prompt', () => {
    assert.equal(renderChat([user('Q'), assistant('A')], { addGenerationPrompt: false }), '<bos><|turn>user\nQ<turn|>\n<|turn>model\nA<turn|>\n');
  });

  it('thinking on: the system turn starts with <|think|>\\n (also without a system message)', () => {
    assert.equal(renderChat([user('Q')], { thinking: true }), '<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nQ<turn|>\n<|turn>model\n');
    assert.equal(renderChat([system('S'), user('Q')], { thinking: true }), '<bos><|turn>system\n<|think|>\nS<turn|>\n<|turn>user\nQ<turn|>\n<|turn>model\n');
  });

  it('thinking off: no empty thought channel after the generation prompt (that is the 26B/31B layout)', () => {
    const p = renderChat([user('Q')], { thinking: false });
    assert.ok(p.endsWith('<|turn>model\n'));
    assert.ok(!p.includes('<|channel>'));
  });

  it('strips thinking blocks from earlier model turns', () => {
    const prompt = renderChat([user('Q1'), assistant('<|channel>thought\nlet me think<channel|>The answer.  '), user('Q2')]);
    assert.equal(prompt, '<bos><|turn>user\nQ1<turn|>\n<|turn>model\nThe answer.<turn|>\n<|turn>user\nQ2<turn|>\n<|turn>model\n');
    assert.equal(stripThinking('a<|channel>x<channel|>b<|channel>y<channel|> c '), 'ab c');
    assert.equal(stripThinking('a<|channel>unterminated'), 'a');
  });

  it("renders an assistant's `thinking` only after the last user message", () => {
    const before = renderChat([user('Q1'), assistant('A1', { thinking: 'hmm' }), user('Q2')]);
    assert.ok(!before.includes('hmm'));
    const last = renderChat([user('Q1'), assistant('A1', { thinking: 'hmm' })], { addGenerationPrompt: false });
    assert.equal(last, '<bos><|turn>user\nQ1<turn|>\n<|turn>model\n<|channel>thought\nhmm\n<channel|>A1<turn|>\n');
  });

  it('content parts: text plus media placeholders', () => {
    const p = renderChat([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: ' What is this? ' }] }]);
    assert.equal(p, '<bos><|turn>user\n<|image|>What is this?<turn|>\n<|turn>model\n');
  });

  it('tool declarations go in the system turn', () => {
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          description: 'Current weather',
          parameters: {
            type: 'object',
            properties: {
              city: { type: 'string', description: 'City name' },
              unit: { type: 'string', enum: ['C', 'F'] },
            },
            required: ['city'],
          },
        },
      },
    ];
    const p = renderChat([user('Weather in Paris?')], { tools });
    assert.equal(
      p,
      '<bos><|turn>system\n' +
        '<|tool>declaration:get_weather{description:<|"|>Current weather<|"|>,parameters:{properties:{' +
        'city:{description:<|"|>City name<|"|>,type:<|"|>STRING<|"|>},' +
        'unit:{enum:[<|"|>C<|"|>,<|"|>F<|"|>],type:<|"|>STRING<|"|>}},' +
        'required:[<|"|>city<|"|>],type:<|"|>OBJECT<|"|>}}<tool|>' +
        '<turn|>\n<|turn>user\nWeather in Paris?<turn|>\n<|turn>model\n',
    );
  });

  it('a tool call with its result folds into one model turn, then the generation prompt', () => {
    const messages: ChatMessage[] = [
      user('Weather in Paris?'),
      assistant('', { toolCalls: [{ id: 'c1', name: 'get_weather', arguments: { city: 'Paris', days: 2 } }] }),
      { role: 'tool', content: '18 C, sunny', toolCallId: 'c1' },
    ];
    assert.equal(
      renderChat(messages),
      '<bos><|turn>user\nWeather in Paris?<turn|>\n<|turn>model\n' +
        '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:2}<tool_call|>' +
        '<|tool_response>response:get_weather{value:<|"|>18 C, sunny<|"|>}<tool_response|>',
    );
    // with thinking on, the model is cued to think about the result
    assert.ok(renderChat(messages, { thinking: true }).endsWith('<tool_response|><|channel>thought\n'));
  });

  it('a tool call without a result ends the prompt with <|tool_response>', () => {
    const p = renderChat([user('Q'), assistant('', { toolCalls: [{ name: 'f', arguments: {} }] })]);
    assert.equal(p, '<bos><|turn>user\nQ<turn|>\n<|turn>model\n<|tool_call>call:f{}<tool_call|><|tool_response>');
  });

  it('the answer after a tool result continues the same model turn', () => {
    const p = renderChat([
      user('Q'),
      assistant('', { toolCalls: [{ id: 'a', name: 'f', arguments: { x: true } }] }),
      { role: 'tool', content: 'ok', toolCallId: 'a' },
      assistant('Done.'),
      user('Thanks'),
    ]);
    assert.equal(
      p,
      '<bos><|turn>user\nQ<turn|>\n<|turn>model\n<|tool_call>call:f{x:true}<tool_call|>' +
        '<|tool_response>response:f{value:<|"|>ok<|"|>}<tool_response|>Done.<turn|>\n' +
        '<|turn>user\nThanks<turn|>\n<|turn>model\n',
    );
  });

  it('formats arguments like the template (sorted keys, <|"|> strings, null, nesting)', () => {
    assert.equal(formatArgument({ b: [1, 'x'], a: null, C: { z: false } }, false), '{a:null,b:[1,<|"|>x<|"|>],C:{z:false}}');
    assert.equal(formatArgument({ k: 'v' }), '{<|"|>k<|"|>:<|"|>v<|"|>}');
    assert.equal(formatDeclaration({ name: 'noop' }), 'declaration:noop{description:<|"|><|"|>}');
  });

  it('rejects unknown roles', () => {
    assert.throws(() => renderChat([{ role: 'robot' as never, content: 'x' }]), (e) => e instanceof RullamaError && e.code === 'bad-argument');
  });
});

describe('encodeChat / stopTokens', { skip: HAVE ? false : `fixture ${VOCAB} not found` }, () => {
  it('starts with exactly one BOS and tokenizes the markers as single tokens', () => {
    const ids = encodeChat(tok, [system('S'), user('Hi')]);
    const bos = tok.tokenId('<bos>')!;
    assert.equal(ids[0], bos);
    assert.equal(ids.filter((i) => i === bos).length, 1);
    assert.equal(ids[1], tok.tokenId('<|turn>'));
    assert.deepEqual(ids, tok.encode('<bos><|turn>system\nS<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n', { addBos: false }));
    // what not to do: the default addBos would double it
    const doubled = tok.encode(renderChat([user('Hi')]));
    assert.deepEqual(doubled.slice(0, 2), [bos, bos]);
  });

  it('thinking and tool markers are single tokens', () => {
    const ids = encodeChat(tok, [user('Q')], { thinking: true });
    assert.ok(ids.includes(tok.tokenId('<|think|>')!));
    const call = encodeChat(tok, [user('Q'), assistant('', { toolCalls: [{ name: 'f', arguments: { s: 'x' } }] })]);
    for (const m of ['<|tool_call>', '<tool_call|>', '<|"|>', '<|tool_response>']) assert.ok(call.includes(tok.tokenId(m)!), m);
  });

  it('stopTokens = <turn|>, <eos>, <|tool_response>, by string', () => {
    const stops = stopTokens(tok);
    assert.deepEqual(new Set(stops), new Set(['<turn|>', '<eos>', '<|tool_response>'].map((s) => tok.tokenId(s)!)));
    assert.ok(stops.includes(tok.eos));
  });
});
