/**
 * The answers of a <rullama-chat>: sends a user message, streams the answer from the
 * conversation in the worker (token, message and state events), and cancels it (stop, reset, a
 * new send, the model going away), keeping the partial answer.
 */
import type { ChatMessage } from '../../core/chat/index.js';
import { RullamaError } from '../../core/errors.js';
import { RullamaCancelEvent, type RullamaCancelReason } from '../events/cancel.js';
import { RullamaMessageEvent } from '../events/message.js';
import { RullamaSendEvent } from '../events/send.js';
import { RullamaTokenEvent } from '../events/token.js';
import { NeedsFolderError } from '../shared/model-input.js';
import type { ChatContext } from './context.js';
import { assistantMessage, chatOptions, promptMessages } from './options.js';
import type { ChatSession } from './session.js';

interface Run {
  controller: AbortController;
  text: string;
  cancelled: RullamaCancelReason | null;
}

export interface AnswerHooks {
  /** Brings the conversation up to date (its adapters) before an answer is generated. */
  prepare(): Promise<void>;
}

export class ChatAnswers {
  private run: Run | null = null;

  constructor(
    private readonly ctx: ChatContext,
    private readonly session: ChatSession,
    private readonly hooks: AnswerHooks,
  ) {}

  /** Whether an answer is being written (or waits for the model). */
  get active(): boolean {
    return this.run !== null;
  }

  /**
   * Sends `text` (default: the input's text) as a user message and answers it. Resolves with the
   * answer, or null when vetoed or cancelled.
   */
  async send(text: string | undefined, input: HTMLTextAreaElement | null): Promise<ChatMessage | null> {
    const { ctx } = this;
    const el = ctx.element;
    const event = new RullamaSendEvent(text ?? input?.value ?? '');
    el.dispatchEvent(event);
    if (event.defaultPrevented) return null;
    const content = String(event.detail.text ?? '');
    if (!content.trim()) return null;
    if (this.run) this.cancel('superseded');
    if (text === undefined && input) input.value = '';
    ctx.error = null;
    el.messages = [...el.messages, { role: 'user', content }];
    return this.answer();
  }

  /** Answers the conversation's last message (loading the model first if needed). */
  async answer(): Promise<ChatMessage | null> {
    const { ctx, session } = this;
    const el = ctx.element;
    const run: Run = { controller: new AbortController(), text: '', cancelled: null };
    this.run = run;
    if (!ctx.loaded) {
      try {
        await session.load();
      } catch (e) {
        this.finish(run);
        if (e instanceof NeedsFolderError) return null; // answered once the folder is granted
        throw e; // already reported by load()
      }
    }
    if (this.run !== run) return null;
    try {
      await this.hooks.prepare();
      if (this.run !== run) return null;
      if (!session.conversation) throw new RullamaError('bad-argument', 'the conversation is closed');
      ctx.draft = '';
      const generation = session.conversation.chat(promptMessages(el.systemPrompt, el.messages), { ...chatOptions(el), signal: run.controller.signal });
      ctx.setState('prefill');
      for await (const token of generation) {
        if (this.run !== run) break;
        if (ctx.state === 'prefill') ctx.setState('generating');
        run.text += token.text;
        ctx.draft = run.text;
        el.dispatchEvent(new RullamaTokenEvent({ id: token.id, text: token.text, logprob: token.logprob }));
      }
      const result = await generation.result;
      if (this.run !== run) return null;
      const message = assistantMessage(result.text);
      el.messages = [...el.messages, message];
      el.stats = result.stats;
      this.finish(run);
      ctx.announce(ctx.text.answered(typeof message.content === 'string' ? message.content.slice(0, 500) : ''));
      ctx.setState('idle');
      el.dispatchEvent(new RullamaMessageEvent(message, result.stats));
      return message;
    } catch (e) {
      // A cancelled run was wound up by cancel (partial answer kept, state, event).
      if (run.cancelled) return null;
      this.finish(run);
      if ((e as RullamaError).code === 'aborted') {
        ctx.setState('idle');
        return null;
      }
      ctx.fail(e);
      throw e;
    }
  }

  /** Cancels the answer being written, if any: fires `rullama-cancel` and keeps the partial answer (except on reset). */
  cancel(reason: RullamaCancelReason): void {
    const { ctx } = this;
    const el = ctx.element;
    const run = this.run;
    if (!run) return;
    run.cancelled = reason;
    this.run = null;
    ctx.draft = null;
    el.dispatchEvent(new RullamaCancelEvent({ reason, partial: run.text }));
    run.controller.abort(new RullamaError('aborted', `cancelled (${reason})`));
    // The answer so far stays in the conversation (a reset forgets it with the rest).
    if (reason !== 'reset' && run.text.trim()) el.messages = [...el.messages, assistantMessage(run.text)];
    if (ctx.state === 'prefill' || ctx.state === 'generating') ctx.setState('idle');
  }

  private finish(run: Run): void {
    if (this.run === run) this.run = null;
    this.ctx.draft = null;
  }
}
