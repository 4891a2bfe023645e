/** The view of <rullama-trainer>: dataset, settings, controls, progress, problems, the loss chart, errors. */
import { html, nothing } from 'lit';
import { styleMap } from 'lit/directives/style-map.js';
import { trainOptions } from './options.js';
import type { TrainerStrings } from './strings.js';
import type { RullamaTrainer } from './trainer.js';

export interface TrainerHandlers {
  onInput(e: Event): void;
  onFile(e: Event): void;
  onDragOver(e: DragEvent): void;
  onDragLeave(): void;
  onDrop(e: DragEvent): void;
  start(): void;
  pause(): void;
  resume(): void;
  cancel(): void;
  exportAdapter(): void;
  useInChat(): void;
  dismiss(): void;
}

function settingsTemplate(el: RullamaTrainer, s: TrainerStrings) {
  let options: ReturnType<typeof trainOptions>;
  try {
    options = trainOptions(el);
  } catch {
    options = {};
  }
  const rank = options.rank ?? 16;
  const items: [string, string][] = [
    [s.rank, String(rank)],
    [s.alpha, String(options.alpha ?? 2 * rank)],
    [s.learningRate, String(options.learningRate ?? 2e-4)],
    options.steps ? [s.steps, String(options.steps)] : [s.epochs, String(options.epochs ?? 1)],
    [s.batchSize, String(options.batchSize ?? 1)],
    [s.maxLength, String(options.maxLength ?? 512)],
    [s.targets, options.targets?.join(', ') ?? s.allTargets],
    [s.validation, `${Math.round((options.validationFraction ?? 0) * 100)} %`],
  ];
  return html`<dl part="settings" class="settings" aria-label=${s.settings}>
    ${items.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}
  </dl>`;
}

function progressTemplate(el: RullamaTrainer, s: TrainerStrings) {
  const p = el.progress;
  const state = el.state;
  if (state === 'loading' || state === 'preparing') {
    return html`<div part="progress" class="progress"><p role="status">${state === 'loading' ? s.loadingModel : s.preparing}</p></div>`;
  }
  if (!p) return nothing;
  const fraction = p.total > 0 ? Math.min(1, p.step / p.total) : 0;
  const parts = [
    s.stepOf(p.step, p.total),
    state === 'training' ? s.layer(s.phases[p.phase] ?? p.phase, p.layer) : '',
    p.tokens_per_s > 0 ? s.tokensPerSecond(p.tokens_per_s) : '',
    state === 'training' && p.eta > 0.5 ? s.timeLeft(p.eta) : '',
  ].filter(Boolean);
  const text = parts.join(' · ');
  return html`<div part="progress" class="progress">
    <div class="bar" role="progressbar" aria-label=${s.progress} aria-valuemin="0" aria-valuemax=${String(p.total)} aria-valuenow=${String(p.step)} aria-valuetext=${s.stepOf(p.step, p.total)}>
      <div class="fill" style=${styleMap({ width: `${(fraction * 100).toFixed(1)}%` })}></div>
    </div>
    <p>${text}</p>
  </div>`;
}

function problemsTemplate(el: RullamaTrainer, s: TrainerStrings) {
  if (el.problems.length === 0) return nothing;
  return html`<section part="problems" class="problems" aria-labelledby="problems-title">
    <h3 id="problems-title">${s.problemsTitle(el.problems.length)}</h3>
    <ul>
      ${el.problems.map((p) => html`<li>${s.problem(p.line, p.reason)}</li>`)}
    </ul>
  </section>`;
}

export function trainerTemplate(el: RullamaTrainer, s: TrainerStrings, on: TrainerHandlers) {
  if (el.headless) return nothing;
  const state = el.state;
  const busy = state === 'loading' || state === 'preparing' || state === 'training';
  const info = el.info;
  const points = el.chart.points;
  const last = points.at(-1);
  const lastVal = points.findLast((p) => p.valLoss !== null && p.valLoss !== undefined)?.valLoss ?? null;
  const error = (el as unknown as { error: { code: string; message: string } | null }).error;
  const announcement = (el as unknown as { announcement: string }).announcement;
  const dragging = (el as unknown as { dragging: boolean }).dragging;
  return html`<div part="base" class="base">
    <section part="dataset" class=${dragging ? 'dataset dragging' : 'dataset'} @dragover=${on.onDragOver} @dragleave=${on.onDragLeave} @drop=${on.onDrop}>
      <label class="field" for="dataset">${s.dataset}</label>
      <textarea id="dataset" part="dataset-input" spellcheck="false" aria-describedby="dataset-hint" .value=${el.data} ?disabled=${busy} @input=${on.onInput}></textarea>
      <div class="row">
        <label part="file-button" class="file">${s.openFile}<input type="file" accept=".jsonl,.json,.txt,.md,text/plain,application/json,application/jsonl" ?disabled=${busy} @change=${on.onFile} /></label>
        <p id="dataset-hint" class="muted">${s.datasetHint}</p>
      </div>
    </section>
    ${settingsTemplate(el, s)}
    <div part="controls" class="row" role="group" aria-label=${s.controls}>
      ${state === 'training'
        ? html`<button type="button" part="pause-button" @click=${on.pause}>${s.pause}</button>`
        : state === 'paused'
          ? html`<button type="button" part="resume-button" class="primary" @click=${on.resume}>${s.resume}</button>`
          : html`<button type="button" part="start-button" class="primary" ?disabled=${busy} @click=${on.start}>${s.start}</button>`}
      <button type="button" part="cancel-button" ?disabled=${!el.hasJob && !busy} @click=${on.cancel}>${s.cancel}</button>
      <button type="button" part="export-button" ?disabled=${!el.hasJob} @click=${on.exportAdapter}>${s.exportAdapter}</button>
      <button type="button" part="use-button" ?disabled=${!el.hasJob} @click=${on.useInChat}>${s.useInChat}</button>
    </div>
    ${progressTemplate(el, s)}
    ${info ? html`<p part="notes" class="muted">${s.examples(info.trainExamples, info.validationExamples)} ${info.restored ? s.restored(info.step) : ''} ${info.checkpointProblem ? s.checkpointProblem(info.checkpointProblem) : ''}</p>` : nothing}
    ${problemsTemplate(el, s)}
    <figure part="chart">
      <div class="plot" role="img" aria-label=${`${s.chart}. ${s.chartSummary(last?.step ?? 0, last?.loss ?? null, lastVal)}`}></div>
      <figcaption><span><span class="swatch"></span>${s.trainLoss}</span><span><span class="swatch validation"></span>${s.validationLoss}</span></figcaption>
    </figure>
    ${error
      ? html`<div part="error" class="error" role="alert">
          <h3>${s.errorTitle}</h3>
          <p>${error.message}</p>
          <button type="button" @click=${on.dismiss}>${s.dismiss}</button>
        </div>`
      : nothing}
    <div class="visually-hidden" aria-live="polite" aria-atomic="true">${announcement}</div>
  </div>`;
}
