import type { LoadProgressDetail } from '../../worker/protocol.js';

export type { LoadProgressDetail };

/**
 * Fired by <rullama-chat> and <rullama-model> while a model loads: downloading ('check',
 * 'download', 'verify', 'cached'), then reading ('open'), uploading to the GPU ('weights') and
 * compiling kernels ('kernels'), then 'ready'. `loaded`/`total` are bytes where bytes move;
 * `bytesPerSecond` and `secondsLeft` come once a rate is known.
 */
export class RullamaLoadProgressEvent extends CustomEvent<LoadProgressDetail> {
  static readonly type = 'rullama-load-progress';
  constructor(detail: LoadProgressDetail) {
    super(RullamaLoadProgressEvent.type, { detail, bubbles: true, composed: true });
  }
}
