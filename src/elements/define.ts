import { RullamaInspect } from './inspect/inspect.js';

/** Registers every rullama element under its tag (safe to call more than once). */
export function defineElements(): void {
  if (!customElements.get('rullama-inspect')) customElements.define('rullama-inspect', RullamaInspect);
}

declare global {
  interface HTMLElementTagNameMap {
    'rullama-inspect': RullamaInspect;
  }
}
