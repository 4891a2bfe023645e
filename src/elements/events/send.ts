/** The detail of `rullama-send`: the text about to be sent; a listener may rewrite it. */
export interface RullamaSendDetail {
  text: string;
}

/**
 * Fired by <rullama-chat> before a user message is added and answered. Cancelable:
 * `preventDefault()` vetoes the send; assigning `detail.text` changes what is sent.
 */
export class RullamaSendEvent extends CustomEvent<RullamaSendDetail> {
  static readonly type = 'rullama-send';
  constructor(text: string) {
    super(RullamaSendEvent.type, { detail: { text }, bubbles: true, composed: true, cancelable: true });
  }
}
