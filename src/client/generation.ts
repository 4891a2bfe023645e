import type { GenerationResult } from '../core/engine.js';
import type { TokenEvent } from '../core/generate.js';

/**
 * A generation running in the worker, as seen from the page: iterate it for the tokens (once),
 * and/or await `result`. It starts at once; tokens that arrive before you iterate are kept.
 * Cancel it with the AbortSignal given to `chat`/`generate`: iteration and `result` then reject
 * with RullamaError code 'aborted'.
 */
export class RemoteGeneration implements AsyncIterable<TokenEvent> {
  readonly result: Promise<GenerationResult>;
  private readonly buffered: TokenEvent[] = [];
  private wake: (() => void) | null = null;
  private finished = false;
  private failure: unknown = null;
  private iterated = false;

  /** @internal Made by RemoteConversation. */
  constructor(start: (onToken: (t: TokenEvent) => void) => Promise<GenerationResult>) {
    this.result = start((t) => {
      this.buffered.push(t);
      this.wake?.();
    });
    this.result.then(
      () => this.finish(null),
      (e) => this.finish(e),
    );
  }

  private finish(error: unknown) {
    this.finished = true;
    this.failure = error;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<TokenEvent, void> {
    if (this.iterated) throw new Error('a generation can be iterated only once');
    this.iterated = true;
    for (;;) {
      while (this.buffered.length > 0) yield this.buffered.shift()!;
      if (this.finished) {
        if (this.failure) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }
}
