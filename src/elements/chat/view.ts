/** The parts of <rullama-chat>'s view: the transcript (messages, the answer being written) and the error panel. */
import { html, nothing } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import type { ChatContent, ChatMessage } from '../../core/chat/index.js';
import type { RullamaErrorDetail } from '../events/error.js';
import type { RullamaChatState } from '../events/state.js';
import { renderMarkdown, splitThinking } from './markdown.js';
import type { ChatStrings } from './strings.js';

export type ErrorInfo = RullamaErrorDetail;

const contentText = (c: ChatContent): string => (typeof c === 'string' ? c : c.map((p) => (p.type === 'text' ? p.text : '')).join(''));

/**
 * One element's rendered markdown: per finished message (a message object never changes; a node
 * lives in one place, so each element keeps its own), and for the answer being written.
 */
export class MarkdownCache {
  private readonly messages = new WeakMap<ChatMessage, { label: string; node: HTMLElement }>();
  private draft: { text: string; label: string; node: HTMLElement } | null = null;

  message(message: ChatMessage, s: ChatStrings): HTMLElement {
    const hit = this.messages.get(message);
    if (hit && hit.label === s.copy) return hit.node;
    const node = renderMarkdown(contentText(message.content), { copyLabel: s.copy });
    this.messages.set(message, { label: s.copy, node });
    return node;
  }

  streaming(text: string, s: ChatStrings): HTMLElement {
    if (this.draft && this.draft.text === text && this.draft.label === s.copy) return this.draft.node;
    this.draft = { text, label: s.copy, node: renderMarkdown(text, { copyLabel: s.copy }) };
    return this.draft.node;
  }
}

function thoughts(text: string, s: ChatStrings, open: boolean) {
  if (!text) return nothing;
  return html`<details part="thinking" class="thinking" ?open=${open}><summary>${open ? s.thinking : s.thoughts}</summary><div dir="auto">${text}</div></details>`;
}

function messageView(m: ChatMessage, s: ChatStrings, cache: MarkdownCache) {
  if (m.role === 'system' || m.role === 'developer' || m.role === 'tool') return nothing;
  const user = m.role === 'user';
  return html`
    <article part="message ${user ? 'message-user' : 'message-assistant'}" class="message ${user ? 'user' : 'assistant'}">
      <div part="role" class="role">${user ? s.you : s.assistant}</div>
      ${user
        ? html`<div part="content" class="content plain" dir="auto">${contentText(m.content)}</div>`
        : html`${thoughts(m.thinking ?? '', s, false)}<div part="content" class="content" dir="auto">${cache.message(m, s)}</div>`}
    </article>
  `;
}

export function transcript(messages: readonly ChatMessage[], draft: string | null, state: RullamaChatState, s: ChatStrings, cache: MarkdownCache, onCopy: (e: Event) => void) {
  const busy = state === 'prefill' || state === 'generating';
  let draftView: unknown = nothing;
  if (draft !== null) {
    const { thinking, answer, thinkingOpen } = splitThinking(draft);
    draftView = html`
      <article part="message message-assistant" class="message assistant streaming">
        <div part="role" class="role">${s.assistant}</div>
        ${thoughts(thinking, s, thinkingOpen)}
        <div part="content" class="content" dir="auto">${answer ? cache.streaming(answer, s) : html`<span class="muted">${state === 'prefill' ? s.reading : s.generating}</span>`}</div>
      </article>
    `;
  }
  return html`
    <section part="transcript" class="transcript" aria-label=${s.conversation} aria-busy=${busy ? 'true' : 'false'} tabindex="0" @click=${onCopy}>
      ${repeat(messages, (m) => m, (m) => messageView(m, s, cache))}
      ${draftView}
    </section>
  `;
}

/** What the error panel offers for each error code. */
function actions(code: string, contextSize: number | undefined, s: ChatStrings): [string, string][] {
  switch (code) {
    case 'no-webgpu':
      return [['retry', s.retry]];
    case 'oom':
      return [['smaller-context', s.smallerContext(Math.max(256, Math.floor((contextSize ?? 4096) / 2)))]];
    case 'device-lost':
      return [['reload', s.reload], ['reload-page', s.reloadPage]];
    case 'context-overflow':
      return [['reset', s.startOver]];
    default:
      return [['retry', s.retry], ['dismiss', s.dismiss]];
  }
}

export function errorPanel(error: ErrorInfo, s: ChatStrings, contextSize: number | undefined, onAction: (action: string) => void) {
  const explanation = s.errors[error.code];
  return html`
    <div part="error" class="error" role="alert">
      <p><strong>${s.errorTitle}</strong> <code>${error.code}</code></p>
      ${explanation ? html`<p>${explanation}</p>` : nothing}
      <p class="detail">${error.message}</p>
      <div class="actions">
        ${actions(error.code, contextSize, s).map(([action, label]) => html`<button type="button" part="error-action" data-action=${action} @click=${() => onAction(action)}>${label}</button>`)}
      </div>
    </div>
  `;
}
