import { css, unsafeCSS } from 'lit';
import { UPLOT_CSS } from './chart.js';

export const trainerStyles = [
  css`
    :host {
      --_bg: var(--rullama-trainer-background, var(--rullama-background, Canvas));
      --_fg: var(--rullama-trainer-color, var(--rullama-color, CanvasText));
      --_muted: var(--rullama-muted-color, color-mix(in srgb, var(--_fg) 65%, transparent));
      --_accent: var(--rullama-accent-color, light-dark(#3451c7, #8ea2ff));
      --_on-accent: var(--rullama-on-accent-color, light-dark(white, #10183a));
      --_radius: var(--rullama-radius, 10px);
      --_font: var(--rullama-font-family, system-ui, sans-serif);
      --_mono: var(--rullama-mono-font-family, ui-monospace, monospace);
      --_border: color-mix(in srgb, var(--_fg) 18%, transparent);
      --_error: light-dark(#b3261e, #ffb4ab);
      --_chart-height: var(--rullama-chart-height, 12rem);
      --rullama-train-loss-color: var(--_accent);
      display: block;
      color-scheme: light dark;
      font-family: var(--_font);
      color: var(--_fg);
      background: var(--_bg);
      border: 1px solid var(--_border);
      border-radius: var(--_radius);
      line-height: 1.5;
    }
    :host([headless]) { display: none !important; }
    :host([theme='dark']) { color-scheme: dark; }
    :host([theme='light']) { color-scheme: light; }
    * { box-sizing: border-box; }
    .base { display: flex; flex-direction: column; gap: 0.75rem; padding: 0.75rem; }
    .dataset { display: flex; flex-direction: column; gap: 0.35rem; border-radius: var(--_radius); }
    .dataset.dragging { outline: 3px dashed var(--_accent); outline-offset: 3px; }
    label.field { font-weight: 600; }
    textarea {
      font: 0.85em/1.4 var(--_mono); color: inherit; background: color-mix(in srgb, var(--_fg) 4%, var(--_bg));
      border: 1px solid var(--_border); border-radius: calc(var(--_radius) / 2); padding: 0.5rem; min-height: 7rem; resize: vertical; width: 100%;
    }
    textarea:focus-visible, button:focus-visible, .file:focus-within { outline: 3px solid var(--_accent); outline-offset: 1px; }
    .muted { color: var(--_muted); font-size: 0.85em; margin: 0; }
    .row { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
    button, .file {
      font: inherit; color: var(--_fg); background: transparent; border: 1px solid var(--_border);
      border-radius: calc(var(--_radius) / 2); padding: 0.35rem 0.8rem; cursor: pointer;
    }
    button.primary { background: var(--_accent); color: var(--_on-accent); border-color: var(--_accent); }
    button:disabled { opacity: 0.5; cursor: default; }
    .file input { position: absolute; width: 1px; height: 1px; opacity: 0; overflow: hidden; }
    .settings { display: flex; flex-wrap: wrap; gap: 0.25rem 1rem; margin: 0; font-size: 0.85em; }
    .settings div { display: flex; gap: 0.3rem; }
    .settings dt { color: var(--_muted); }
    .settings dd { margin: 0; font-variant-numeric: tabular-nums; }
    .progress .bar { height: 0.5rem; border-radius: 0.25rem; background: var(--_border); overflow: hidden; }
    .progress .fill { height: 100%; background: var(--_accent); transition: width 0.2s; }
    .progress p { margin: 0.25rem 0 0; font-size: 0.85em; font-variant-numeric: tabular-nums; }
    .problems { border-left: 3px solid var(--_error); padding: 0.25rem 0.75rem; }
    .problems h3 { font-size: 0.95em; margin: 0 0 0.25rem; }
    .problems ul { margin: 0; padding-left: 1.2rem; font-size: 0.85em; max-height: 8rem; overflow-y: auto; }
    figure { margin: 0; }
    .plot { height: var(--_chart-height); width: 100%; overflow: hidden; }
    figcaption { display: flex; gap: 1rem; font-size: 0.85em; color: var(--_muted); }
    .swatch { display: inline-block; width: 1.2em; height: 0; border-top: 2px solid var(--rullama-train-loss-color); vertical-align: middle; margin-right: 0.3em; }
    .swatch.validation { border-top: 2px dashed var(--rullama-validation-loss-color, #c75a34); }
    .error { border: 1px solid var(--_error); border-radius: calc(var(--_radius) / 2); padding: 0.5rem 0.75rem; }
    .error h3 { color: var(--_error); font-size: 0.95em; margin: 0 0 0.25rem; }
    .error p { margin: 0 0 0.5rem; overflow-wrap: anywhere; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
    @media (prefers-reduced-motion: reduce) { .progress .fill { transition: none; } }
  `,
  unsafeCSS(UPLOT_CSS),
];
