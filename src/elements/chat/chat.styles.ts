import { css } from 'lit';

export const chatStyles = css`
  :host {
    --_bg: var(--rullama-chat-background, var(--rullama-background, Canvas));
    --_fg: var(--rullama-chat-color, var(--rullama-color, CanvasText));
    --_muted: var(--rullama-muted-color, color-mix(in srgb, var(--_fg) 65%, transparent));
    --_accent: var(--rullama-accent-color, light-dark(#3451c7, #8ea2ff));
    --_on-accent: var(--rullama-on-accent-color, light-dark(white, #10183a));
    --_radius: var(--rullama-radius, 10px);
    --_font: var(--rullama-font-family, system-ui, sans-serif);
    --_mono: var(--rullama-mono-font-family, ui-monospace, monospace);
    --_user-bg: var(--rullama-user-background, color-mix(in srgb, var(--_accent) 14%, var(--_bg)));
    --_assistant-bg: var(--rullama-assistant-background, color-mix(in srgb, var(--_fg) 5%, var(--_bg)));
    --_border: color-mix(in srgb, var(--_fg) 18%, transparent);
    --_error: light-dark(#b3261e, #ffb4ab);
    --_height: var(--rullama-chat-height, 32rem);
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
  .base { display: flex; flex-direction: column; height: var(--_height); padding: 0.75rem; gap: 0.5rem; }
  .base.dragging { outline: 3px dashed var(--_accent); outline-offset: -6px; border-radius: var(--_radius); }
  .transcript { flex: 1; overflow-y: auto; display: flex; flex-direction: column; gap: 0.6rem; padding: 0.25rem; border-radius: calc(var(--_radius) / 2); }
  .transcript:focus-visible { outline: 3px solid var(--_accent); outline-offset: 1px; }
  .message { padding: 0.5rem 0.75rem; border-radius: var(--_radius); max-width: 92%; overflow-wrap: anywhere; }
  .message.user { align-self: flex-end; background: var(--_user-bg); }
  .message.assistant { align-self: flex-start; background: var(--_assistant-bg); }
  .role { font-size: 0.75em; font-weight: 600; color: var(--_muted); margin: 0 0 0.15rem; }
  .content.plain { white-space: pre-wrap; }
  .content > .markdown > :first-child { margin-top: 0; }
  .content > .markdown > :last-child { margin-bottom: 0; }
  .content a { color: var(--_accent); }
  .content table { border-collapse: collapse; }
  .content th, .content td { border: 1px solid var(--_border); padding: 0.2rem 0.5rem; }
  .content blockquote { margin: 0.5rem 0; padding-left: 0.75rem; border-inline-start: 3px solid var(--_border); color: var(--_muted); }
  code { font-family: var(--_mono); font-size: 0.92em; }
  :not(pre) > code { background: color-mix(in srgb, var(--_fg) 9%, transparent); padding: 0 0.25em; border-radius: 4px; }
  .code { position: relative; margin: 0.5rem 0; }
  .code pre { margin: 0; padding: 0.75rem; padding-top: 2rem; overflow-x: auto; border-radius: calc(var(--_radius) / 2); background: color-mix(in srgb, var(--_fg) 8%, var(--_bg)); }
  .code .copy { position: absolute; top: 0.3rem; inset-inline-end: 0.3rem; font-size: 0.8em; padding: 0.1rem 0.5rem; }
  .thinking { font-size: 0.9em; color: var(--_muted); margin-bottom: 0.3rem; }
  .thinking > div { white-space: pre-wrap; }
  .streaming .content > .markdown > :last-child::after { content: '▍'; animation: blink 1s steps(2) infinite; color: var(--_accent); }
  .streaming .content > .markdown > .code:last-child::after { content: none; }
  @keyframes blink { 50% { opacity: 0; } }
  @media (prefers-reduced-motion: reduce) { .streaming .content > .markdown > :last-child::after, .fill.indeterminate { animation: none; } }
  .composer { display: flex; gap: 0.5rem; align-items: flex-end; }
  textarea {
    flex: 1; resize: vertical; min-height: 2.75rem; max-height: 12rem; font: inherit; color: inherit;
    background: var(--_bg); border: 1px solid var(--_border); border-radius: calc(var(--_radius) / 1.5); padding: 0.5rem 0.6rem;
  }
  textarea::placeholder { color: var(--_muted); opacity: 1; }
  button {
    font: inherit; padding: 0.45rem 0.9rem; border-radius: calc(var(--_radius) / 1.5);
    border: 1px solid var(--_accent); background: var(--_accent); color: var(--_on-accent); cursor: pointer;
  }
  button.stop, .error button, .copy { background: transparent; color: var(--_fg); border-color: var(--_border); }
  button:disabled { opacity: 0.55; cursor: default; }
  button:focus-visible, textarea:focus-visible, summary:focus-visible, a:focus-visible { outline: 3px solid var(--_accent); outline-offset: 2px; }
  .progress .bar { height: 0.5rem; border-radius: 999px; background: color-mix(in srgb, var(--_fg) 12%, transparent); overflow: hidden; }
  .progress .fill { height: 100%; background: var(--_accent); transition: width 0.2s; }
  .progress .fill.indeterminate { width: 30%; animation: slide 1.2s ease-in-out infinite; }
  @keyframes slide { from { transform: translateX(-100%); } to { transform: translateX(340%); } }
  .progress p { margin: 0.25rem 0 0; font-size: 0.85em; }
  .error { border: 1px solid var(--_error); border-inline-start-width: 4px; border-radius: calc(var(--_radius) / 2); padding: 0.5rem 0.75rem; }
  .error p { margin: 0 0 0.35rem; }
  .error code { color: var(--_error); }
  .error .detail { font-size: 0.85em; color: var(--_muted); }
  .error .actions { display: flex; gap: 0.5rem; flex-wrap: wrap; }
  .notice { display: flex; gap: 0.75rem; align-items: center; flex-wrap: wrap; }
  .notice p { margin: 0; }
  .stats { font-size: 0.8em; margin: 0; text-align: end; }
  .muted { color: var(--_muted); }
  .sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
`;
