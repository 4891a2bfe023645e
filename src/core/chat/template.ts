/**
 * Gemma 4 chat prompts, E2B/E4B ("small") layout (spec §4.3):
 *
 *   <bos><|turn>system\n[<|think|>\n]{system, trimmed}{<|tool>…<tool|>…}<turn|>\n
 *   <|turn>user\n{text, trimmed}<turn|>\n
 *   <|turn>model\n{answer with <|channel>…<channel|> blocks stripped}<turn|>\n
 *   <|turn>model\n                                        ← generation prompt
 *
 * The system turn appears when there is a system (or developer) message, tools, or thinking.
 *
 * Thinking: `<|think|>\n` opens the system turn. Decided from Ollama's Gemma4Renderer and
 * the July 2026 E2B template in Ollama's testdata (both write the newline); the older 26B
 * template in the vocab fixture writes `<|think|>` without it and, with thinking off, adds an
 * empty `<|channel>thought\n<channel|>` after the generation prompt — the E2B layout does not.
 *
 * Tool calls and results follow the E2B template: calls go in the model turn as
 * `<|tool_call>call:NAME{…}<tool_call|>`; the `tool` messages that follow are folded into the
 * same turn as `<|tool_response>response:NAME{…}<tool_response|>`; a call without results
 * ends the prompt with `<|tool_response>` (the model's cue that results come next).
 */
import { RullamaError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { formatDeclaration, formatToolCall, formatToolResponse, type ChatTool } from './format.js';

export type { ChatTool, ChatFunction } from './format.js';

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

/** Content as text, or as parts (text, and placeholders for media the processor expands). */
export type ChatContent = string | ChatContentPart[];
export type ChatContentPart = { type: 'text'; text: string } | { type: 'image' } | { type: 'audio' } | { type: 'video' };

export interface ChatToolCall {
  /** Matched against `toolCallId` of the tool messages that answer it. */
  id?: string;
  name: string;
  arguments?: Record<string, unknown> | null;
}

export interface ChatMessage {
  role: ChatRole;
  content: ChatContent;
  /** Assistant reasoning, rendered as a thought channel only after the last user message. */
  thinking?: string;
  /** Assistant: the tools it called. */
  toolCalls?: ChatToolCall[];
  /** Tool: the name of the tool that answered (else resolved through `toolCallId`). */
  toolName?: string;
  /** Tool: which call this answers. */
  toolCallId?: string;
}

export interface RenderChatOptions {
  /** End with the `<|turn>model\n` that asks the model to answer. Default true. */
  addGenerationPrompt?: boolean;
  /** Enable thinking (`<|think|>` in the system turn). Default false. */
  thinking?: boolean;
  /** Tools the model may call, declared in the system turn. */
  tools?: ChatTool[];
  /** Keep the thinking of an assistant turn that made tool calls before the last user message. */
  preserveThinking?: boolean;
}

export const BOS_TEXT = '<bos>';
/** Strings of the chat markers; resolve ids with `tokenizer.tokenId(…)`, never by number. */
export const MARKERS = {
  turnOpen: '<|turn>',
  turnClose: '<turn|>',
  think: '<|think|>',
  channelOpen: '<|channel>',
  channelClose: '<channel|>',
  toolOpen: '<|tool>',
  toolClose: '<tool|>',
  toolCallOpen: '<|tool_call>',
  toolCallClose: '<tool_call|>',
  toolResponseOpen: '<|tool_response>',
  toolResponseClose: '<tool_response|>',
  quote: '<|"|>',
  eos: '<eos>',
} as const;

/** Python's str.strip() whitespace, close enough: JS trim(). */
const trim = (s: string): string => s.trim();

/**
 * Removes `<|channel>…<channel|>` blocks as the template's `strip_thinking` does: split on
 * `<channel|>`, and of each piece keep what precedes `<|channel>`; then trim.
 */
export function stripThinking(text: string): string {
  let out = '';
  for (const part of text.split(MARKERS.channelClose)) {
    const i = part.indexOf(MARKERS.channelOpen);
    out += i >= 0 ? part.slice(0, i) : part;
  }
  return trim(out);
}

function renderContent(content: ChatContent, model: boolean): string {
  if (typeof content === 'string') return model ? stripThinking(content) : trim(content);
  let out = '';
  for (const part of content) {
    if (part.type === 'text') out += model ? stripThinking(part.text) : trim(part.text);
    else if (part.type === 'image') out += '<|image|>';
    else if (part.type === 'audio') out += '<|audio|>';
    else if (part.type === 'video') out += '<|video|>';
  }
  return out;
}

function contentText(content: ChatContent): string {
  if (typeof content === 'string') return content;
  return content.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** The prompt text for a conversation, starting with `<bos>`. */
export function renderChat(messages: readonly ChatMessage[], options: RenderChatOptions = {}): string {
  const addGenerationPrompt = options.addGenerationPrompt ?? true;
  const thinking = options.thinking ?? false;
  const tools = options.tools ?? [];
  for (const m of messages) {
    if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(m.role)) {
      throw new RullamaError('bad-argument', `unknown chat role "${String(m.role)}"`);
    }
  }

  let out = BOS_TEXT;
  let prevType: 'think' | 'tool' | 'tool_call' | 'tool_response' | undefined;
  let loop = messages;
  const first = messages[0];
  const hasSystem = first !== undefined && (first.role === 'system' || first.role === 'developer');
  if (thinking || tools.length > 0 || hasSystem) {
    out += '<|turn>system\n';
    if (thinking) {
      out += '<|think|>\n';
      prevType = 'think';
    }
    if (hasSystem) {
      out += typeof first.content === 'string' ? trim(first.content) : first.content.map((p) => (p.type === 'text' ? trim(p.text) + ' ' : '')).join('');
      loop = messages.slice(1);
    }
    if (tools.length > 0) {
      for (const tool of tools) out += '<|tool>' + formatDeclaration(tool) + '<tool|>';
      prevType = 'tool';
    }
    out += '<turn|>\n';
  }

  let lastUser = -1;
  loop.forEach((m, i) => {
    if (m.role === 'user') lastUser = i;
  });

  let prevNonToolRole: ChatRole | undefined;
  for (let i = 0; i < loop.length; i++) {
    const m = loop[i]!;
    if (m.role === 'tool') continue;
    prevType = undefined;
    const role = m.role === 'assistant' ? 'model' : m.role;
    const continueSameTurn = role === 'model' && prevNonToolRole === 'assistant';
    if (!continueSameTurn) out += '<|turn>' + role + '\n';

    const calls = m.toolCalls ?? [];
    const gate = i > lastUser || (options.preserveThinking === true && calls.length > 0);
    if (m.thinking && gate) out += '<|channel>thought\n' + m.thinking + '\n<channel|>';

    for (const c of calls) out += formatToolCall(c.name, c.arguments);
    if (calls.length > 0) prevType = 'tool_call';

    let responded = false;
    if (calls.length > 0) {
      for (let k = i + 1; k < loop.length && loop[k]!.role === 'tool'; k++) {
        const t = loop[k]!;
        // As the template does: a call whose id equals the message's toolCallId names it,
        // and (Jinja's None == None) with no ids on either side, the last call does.
        let name = t.toolName || 'unknown';
        for (const c of calls) if (c.id === t.toolCallId) name = c.name;
        const body = t.content;
        out += formatToolResponse(name, contentText(body));
        if (typeof body !== 'string') {
          for (const p of body) {
            if (p.type === 'image') out += '<|image|>';
            else if (p.type === 'audio') out += '<|audio|>';
            else if (p.type === 'video') out += '<|video|>';
          }
        }
        responded = true;
        prevType = 'tool_response';
      }
    }

    const captured = renderContent(m.content, role === 'model');
    out += captured;
    const hasContent = trim(captured).length > 0;

    let nextRole: ChatRole | undefined;
    for (let j = i + 1; j < loop.length; j++) {
      if (loop[j]!.role !== 'tool') {
        nextRole = loop[j]!.role;
        break;
      }
    }
    const continuesIntoNext = role === 'model' && nextRole === 'assistant' && (calls.length === 0 || responded);
    if (prevType === 'tool_call' && !responded) out += '<|tool_response>';
    else if (continuesIntoNext) {
      // the next assistant message continues this model turn
    } else if (!(responded && !hasContent && nextRole === undefined)) out += '<turn|>\n';

    prevNonToolRole = m.role;
  }

  if (addGenerationPrompt) {
    if (prevType !== 'tool_response' && prevType !== 'tool_call') out += '<|turn>model\n';
    else if (prevType === 'tool_response' && thinking) out += '<|channel>thought\n';
  }
  return out;
}

/**
 * Renders and tokenizes a conversation. The prompt carries its own `<bos>`, so it is encoded
 * with `addBos: false` and special parsing on: the result starts with exactly one BOS.
 */
export function encodeChat(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: RenderChatOptions = {}): number[] {
  const ids = tokenizer.encode(renderChat(messages, options), { addBos: false, parseSpecial: true });
  if (ids[0] !== tokenizer.bos) ids.unshift(tokenizer.bos);
  return ids;
}

/**
 * Ids that end generation: `<turn|>`, `<eos>` and `<|tool_response>` (llama.cpp's end-of-
 * generation set for Gemma 4), looked up by string; the tokenizer's EOS is always included.
 */
export function stopTokens(tokenizer: Tokenizer): number[] {
  const ids = new Set<number>();
  for (const s of [MARKERS.turnClose, MARKERS.eos, MARKERS.toolResponseOpen]) {
    const id = tokenizer.tokenId(s);
    if (id !== undefined) ids.add(id);
  }
  ids.add(tokenizer.eos);
  return [...ids];
}
