/** What <rullama-chat>'s attributes mean for a request: the sampling options, the prompt, the answer. */
import type { ChatMessage } from '../../core/chat/index.js';
import type { ChatOptions } from '../../core/engine.js';
import { splitThinking } from './markdown.js';

/** The attributes that shape an answer. */
export interface AnswerSettings {
  systemPrompt: string | null;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  maxTokens?: number;
  seed?: number;
  repetitionPenalty?: number;
  thinking: boolean;
  overflow: 'drop-oldest' | 'error';
}

const num = (v: number | null | undefined): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** The engine's chat options for these settings (a missing or non-numeric attribute is left to the engine). */
export function chatOptions(s: AnswerSettings): ChatOptions {
  const o: ChatOptions = { overflow: s.overflow === 'error' ? 'error' : 'drop-oldest', template: { thinking: s.thinking } };
  const set = <K extends keyof ChatOptions>(key: K, value: ChatOptions[K] | undefined) => {
    if (value !== undefined) o[key] = value;
  };
  set('temperature', num(s.temperature));
  set('topK', num(s.topK));
  set('topP', num(s.topP));
  set('minP', num(s.minP));
  set('maxTokens', num(s.maxTokens));
  set('seed', num(s.seed));
  set('repetitionPenalty', num(s.repetitionPenalty));
  return o;
}

/** The messages sent to the model: the system prompt first, unless the conversation starts with its own. */
export function promptMessages(systemPrompt: string | null, messages: ChatMessage[]): ChatMessage[] {
  const first = messages[0];
  if (!systemPrompt || first?.role === 'system' || first?.role === 'developer') return messages;
  return [{ role: 'system', content: systemPrompt }, ...messages];
}

/** The assistant message for a generated text (thoughts, if any, apart). */
export function assistantMessage(text: string): ChatMessage {
  const { thinking, answer } = splitThinking(text);
  return thinking ? { role: 'assistant', content: answer, thinking } : { role: 'assistant', content: answer };
}
