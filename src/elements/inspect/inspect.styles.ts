import { css } from 'lit';

export const inspectStyles = css`
  :host {
    --_bg: var(--rullama-inspect-background, var(--rullama-background, Canvas));
    --_fg: var(--rullama-inspect-color, var(--rullama-color, CanvasText));
    --_muted: var(--rullama-muted-color, color-mix(in srgb, var(--_fg) 60%, transparent));
    --_accent: var(--rullama-accent-color, #3451c7);
    --_radius: var(--rullama-radius, 8px);
    --_font: var(--rullama-font-family, system-ui, sans-serif);
    --_mono: var(--rullama-mono-font-family, ui-monospace, monospace);
    display: block;
    color-scheme: light dark;
    font-family: var(--_font);
    background: var(--_bg);
    color: var(--_fg);
    border: 1px solid color-mix(in srgb, var(--_fg) 15%, transparent);
    border-radius: var(--_radius);
    padding: 1rem;
  }
  [part='picker'] {
    display: flex;
    gap: 0.5rem;
    align-items: center;
    flex-wrap: wrap;
    padding: 1rem;
    border: 2px dashed color-mix(in srgb, var(--_fg) 25%, transparent);
    border-radius: var(--_radius);
  }
  [part='picker'].dragging { border-color: var(--_accent); }
  button, label.button {
    font: inherit;
    padding: 0.4rem 0.8rem;
    border-radius: calc(var(--_radius) / 2);
    border: 1px solid var(--_accent);
    background: var(--_accent);
    color: white;
    cursor: pointer;
  }
  button:focus-visible, textarea:focus-visible, label.button:focus-within { outline: 3px solid var(--_accent); outline-offset: 2px; }
  input[type='file'] { position: absolute; opacity: 0; width: 1px; height: 1px; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; }
  dt { color: var(--_muted); }
  dd { margin: 0; font-family: var(--_mono); overflow-wrap: anywhere; }
  table { border-collapse: collapse; font-family: var(--_mono); font-size: 0.85em; }
  th, td { text-align: left; padding: 0.15rem 0.75rem 0.15rem 0; }
  textarea { width: 100%; box-sizing: border-box; min-height: 4rem; font: inherit; background: transparent; color: inherit; border-radius: calc(var(--_radius) / 2); }
  [part='tokens'] { display: flex; flex-wrap: wrap; gap: 2px; font-family: var(--_mono); font-size: 0.85em; }
  [part='token'] { padding: 0 3px; border-radius: 3px; background: color-mix(in srgb, var(--_accent) 18%, transparent); white-space: pre; }
  [part='token'] small { color: var(--_muted); }
  [part='error'] { color: #c62828; border-left: 4px solid #c62828; padding-left: 0.5rem; }
  .muted { color: var(--_muted); }
`;
