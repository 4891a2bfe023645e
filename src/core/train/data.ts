import { encodeChat, type ChatMessage, type ChatRole } from '../chat/index.js';
import { RullamaError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/**
 * One training example: its tokens and, per position, the token it must predict (−1 where no
 * loss counts: the prompt, the user's turns, the padding between packed examples).
 */
export interface TrainingExample {
  tokens: number[];
  labels: number[];
  /** Where it came from (line number in the file, 1-based). */
  line: number;
}

/** A line that could not be used, and why. None is dropped silently. */
export interface DataProblem {
  line: number;
  reason: string;
}

export interface ParsedDataset {
  examples: TrainingExample[];
  problems: DataProblem[];
}

export interface ParseOptions {
  /** Longest example in tokens; longer ones are reported, not cut. */
  maxLength: number;
  /** 'auto' (default): JSON Lines when the first non-empty line starts with '{', else plain text. */
  format?: 'auto' | 'jsonl' | 'text';
}

const ROLES: readonly ChatRole[] = ['system', 'developer', 'user', 'assistant', 'tool'];

/**
 * Reads a dataset:
 * - JSON Lines of `{"messages": [{role, content}, …]}` (chat: loss on the assistant turns only,
 *   their closing `<turn|>` included), `{"prompt", "completion"}` (loss on the completion and the
 *   end-of-text token) or `{"text"}` (loss everywhere);
 * - plain text: documents separated by blank lines (loss everywhere).
 */
export function parseDataset(content: string, tokenizer: Tokenizer, options: ParseOptions): ParsedDataset {
  const lines = content.split(/\r?\n/);
  const first = lines.find((l) => l.trim() !== '') ?? '';
  const format = options.format === 'jsonl' || ((options.format ?? 'auto') === 'auto' && first.trimStart().startsWith('{')) ? 'jsonl' : 'text';
  const examples: TrainingExample[] = [];
  const problems: DataProblem[] = [];
  const accept = (line: number, example: { tokens: number[]; labels: number[] } | string) => {
    if (typeof example === 'string') problems.push({ line, reason: example });
    else if (example.tokens.length > options.maxLength) problems.push({ line, reason: `${example.tokens.length} tokens, more than the maximum length of ${options.maxLength}` });
    else if (!example.labels.some((l) => l >= 0)) problems.push({ line, reason: 'nothing to learn (no assistant or completion tokens)' });
    else examples.push({ ...example, line });
  };
  if (format === 'text') {
    let start = -1;
    let doc: string[] = [];
    const flush = () => {
      if (doc.length) accept(start + 1, plainText(doc.join('\n'), tokenizer));
      doc = [];
    };
    lines.forEach((l, i) => {
      if (l.trim() === '') return flush();
      if (doc.length === 0) start = i;
      doc.push(l);
    });
    flush();
    return { examples, problems };
  }
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    let record: unknown;
    try {
      record = JSON.parse(raw);
    } catch (e) {
      return accept(i + 1, `not valid JSON (${(e as Error).message})`);
    }
    accept(i + 1, fromRecord(record, tokenizer));
  });
  return { examples, problems };
}

function fromRecord(record: unknown, tokenizer: Tokenizer): { tokens: number[]; labels: number[] } | string {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return 'a line must be a JSON object';
  const r = record as Record<string, unknown>;
  if ('messages' in r) {
    const messages = r.messages;
    if (!Array.isArray(messages) || messages.length === 0) return '"messages" must be a non-empty array';
    for (const [k, m] of messages.entries()) {
      if (typeof m !== 'object' || m === null) return `messages[${k}] is not an object`;
      const { role, content } = m as Record<string, unknown>;
      if (!ROLES.includes(role as ChatRole)) return `messages[${k}].role must be one of ${ROLES.join(', ')}`;
      if (typeof content !== 'string') return `messages[${k}].content must be a string`;
    }
    return chat(messages as ChatMessage[], tokenizer);
  }
  if ('prompt' in r || 'completion' in r) {
    if (typeof r.prompt !== 'string' || typeof r.completion !== 'string') return '"prompt" and "completion" must both be strings';
    const prompt = tokenizer.encode(r.prompt);
    const completion = [...tokenizer.encode(r.completion, { addBos: false }), tokenizer.eos];
    return withLoss(prompt, completion);
  }
  if ('text' in r) {
    if (typeof r.text !== 'string' || r.text === '') return '"text" must be a non-empty string';
    return plainText(r.text, tokenizer);
  }
  return 'expected "messages", "prompt"/"completion" or "text"';
}

/** Tokens `before` (no loss) then `learnt` (predicted): labels shifted by one. */
function withLoss(before: number[], learnt: number[]): { tokens: number[]; labels: number[] } {
  const tokens = [...before, ...learnt];
  const labels = tokens.map((_, t) => (t + 1 >= before.length && t + 1 < tokens.length ? tokens[t + 1]! : -1));
  return { tokens, labels };
}

function plainText(text: string, tokenizer: Tokenizer): { tokens: number[]; labels: number[] } {
  return withLoss([tokenizer.bos], [...tokenizer.encode(text, { addBos: false }), tokenizer.eos]);
}

/**
 * A chat record: the whole conversation rendered by the chat template; the tokens of each
 * assistant turn (from after `<|turn>model\n` to its `<turn|>`) are learnt.
 */
function chat(messages: ChatMessage[], tokenizer: Tokenizer): { tokens: number[]; labels: number[] } | string {
  if (!messages.some((m) => m.role === 'assistant')) return 'the conversation has no assistant message to learn';
  const tokens = encodeChat(tokenizer, messages, { addGenerationPrompt: false });
  const learnt = new Array<boolean>(tokens.length).fill(false);
  for (const [i, m] of messages.entries()) {
    if (m.role !== 'assistant') continue;
    const before = encodeChat(tokenizer, messages.slice(0, i), { addGenerationPrompt: true });
    const through = encodeChat(tokenizer, messages.slice(0, i + 1), { addGenerationPrompt: false });
    const isPrefix = (a: number[]) => a.every((t, k) => tokens[k] === t);
    if (!isPrefix(before) || !isPrefix(through)) return `message ${i} does not tokenize the same alone as in the conversation`;
    // The turn's text and its `<turn|>`, not the newline the template writes after it.
    const close = tokenizer.tokenId('<turn|>');
    let end = through.length;
    while (end > before.length && tokens[end - 1] !== close) end--;
    for (let t = before.length; t < end; t++) learnt[t] = true;
  }
  const labels = tokens.map((_, t) => (t + 1 < tokens.length && learnt[t + 1] ? tokens[t + 1]! : -1));
  return { tokens, labels };
}

/**
 * Packs examples into sequences of at most `length` tokens, in order, each example whole (the
 * positions between examples learn nothing). Examples attend to the earlier ones in the same
 * sequence, as in most trainers' packing; a document boundary is the `<bos>` each example starts with.
 */
export function packExamples(examples: readonly TrainingExample[], length: number): TrainingExample[] {
  const out: TrainingExample[] = [];
  let current: TrainingExample | null = null;
  for (const e of examples) {
    if (e.tokens.length > length) throw new RullamaError('bad-argument', `line ${e.line}: ${e.tokens.length} tokens do not fit a sequence of ${length}`);
    if (current && current.tokens.length + e.tokens.length <= length) {
      current.tokens.push(...e.tokens);
      current.labels.push(...e.labels);
    } else {
      current = { tokens: [...e.tokens], labels: [...e.labels], line: e.line };
      out.push(current);
    }
  }
  return out;
}

/** A deterministic train/validation split: `fraction` of the examples (at least one when there are ten or more) for validation. */
export function splitDataset<T>(examples: readonly T[], fraction: number, seed: number): { train: T[]; validation: T[] } {
  if (!(fraction >= 0 && fraction < 1)) throw new RullamaError('bad-argument', `validation fraction ${fraction} must be in [0, 1)`);
  const order = examples.map((_, i) => i);
  let s = seed >>> 0 || 1;
  for (let i = order.length - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const j = (s >>> 0) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  let n = Math.round(examples.length * fraction);
  if (fraction > 0 && examples.length >= 10) n = Math.max(1, n);
  const validation = new Set(order.slice(0, n));
  return { train: examples.filter((_, i) => !validation.has(i)), validation: examples.filter((_, i) => validation.has(i)) };
}
