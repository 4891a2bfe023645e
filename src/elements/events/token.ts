/** The detail of `rullama-token`. */
export interface RullamaTokenDetail {
  /** The token id. */
  id: number;
  /** The text it adds (empty while a multi-byte character is incomplete). */
  text: string;
  /** Its natural-log probability under the model. */
  logprob: number;
}

/** Fired by <rullama-chat> for every generated token, as it comes. */
export class RullamaTokenEvent extends CustomEvent<RullamaTokenDetail> {
  static readonly type = 'rullama-token';
  constructor(detail: RullamaTokenDetail) {
    super(RullamaTokenEvent.type, { detail, bubbles: true, composed: true });
  }
}
