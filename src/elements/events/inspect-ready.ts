import type { GGUFSummary } from '../../core/gguf/inspect.js';

/** Fired by <rullama-inspect> when a GGUF header has been read. */
export class RullamaInspectReadyEvent extends CustomEvent<{ summary: GGUFSummary }> {
  static readonly type = 'rullama-inspect-ready';
  constructor(summary: GGUFSummary) {
    super(RullamaInspectReadyEvent.type, { detail: { summary }, bubbles: true, composed: true });
  }
}
