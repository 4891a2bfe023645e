import type { RullamaErrorCode } from '../../core/errors.js';

export interface RullamaErrorDetail {
  code: RullamaErrorCode | 'unknown';
  message: string;
}

/** Fired by any rullama element when an operation fails. Bubbles and crosses shadow roots. */
export class RullamaErrorEvent extends CustomEvent<RullamaErrorDetail> {
  static readonly type = 'rullama-error';
  constructor(detail: RullamaErrorDetail) {
    super(RullamaErrorEvent.type, { detail, bubbles: true, composed: true });
  }
  static from(error: unknown): RullamaErrorEvent {
    const e = error as { code?: RullamaErrorCode; message?: string };
    return new RullamaErrorEvent({ code: e?.code ?? 'unknown', message: e?.message ?? String(error) });
  }
}
