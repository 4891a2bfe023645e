/** <rullama-chat>'s whole view: progress, notices, the transcript, the error panel, the composer. */
import { html, nothing } from 'lit';
import { progressTemplate } from '../shared/progress.js';
import type { ChatContext } from './context.js';
import type { ChatInteractions } from './interactions.js';
import type { ChatSession } from './session.js';
import { errorPanel, transcript } from './view.js';

export function chatTemplate(ctx: ChatContext, session: ChatSession, ui: ChatInteractions) {
  const el = ctx.element;
  if (el.headless) return html`<div class="sr-only" role="status" aria-live="polite">${ctx.announcement}</div>`;
  const s = ctx.text;
  const { state } = ctx;
  const busy = state === 'prefill' || state === 'generating';
  const canLoad = !ctx.loaded && !session.isLoading && !ctx.needsFolder && !ctx.error && session.hasModel;
  return html`
    <div part="base" class=${ctx.dragging ? 'base dragging' : 'base'} @dragover=${ui.onDragOver} @dragleave=${ui.onDragLeave} @drop=${ui.onDrop}>
      ${state === 'loading' ? progressTemplate(ctx.progress, s) : nothing}
      ${ctx.needsFolder
        ? html`<div class="notice" part="folder">
            <p>${s.ollamaFolderHint(ctx.needsFolder.model)}</p>
            <button type="button" part="load-button" @click=${ui.onFolderClick}>${ctx.needsFolder.status === 'none' ? s.pickOllamaFolder : s.grantOllamaFolder}</button>
          </div>`
        : nothing}
      ${canLoad && !el.autoload ? html`<div class="notice"><button type="button" part="load-button" @click=${ui.onLoadClick}>${s.loadModel}</button></div>` : nothing}
      ${!session.hasModel && !ctx.loaded ? html`<p class="muted notice">${s.noModel}</p>` : nothing}
      ${transcript(el.messages, ctx.draft, state, s, ctx.markdown, ui.onCopy)}
      ${ctx.error ? errorPanel(ctx.error, s, el.contextSize ?? el.modelInfo?.contextSize, ui.onAction) : nothing}
      ${el.stats ? html`<p part="stats" class="muted stats">${s.stats(el.stats.decodeTokensPerSecond, el.stats.timeToFirstTokenMs, el.stats.generatedTokens)}</p>` : nothing}
      <form part="composer" class="composer" @submit=${ui.onSubmit}>
        <label class="sr-only" for="input">${s.inputLabel}</label>
        <textarea id="input" part="input" rows="2" dir="auto" placeholder=${el.placeholder ?? s.placeholder} @keydown=${ui.onKeydown}></textarea>
        ${busy
          ? html`<button type="button" part="stop-button" class="stop" @click=${() => el.stop()}>${s.stop}</button>`
          : html`<button type="submit" part="send-button" ?disabled=${state === 'loading'}>${s.send}</button>`}
      </form>
      <div class="sr-only" role="status" aria-live="polite" aria-atomic="true">${ctx.announcement}</div>
    </div>
  `;
}
