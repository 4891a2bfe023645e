export interface RullamaAdapterAppliedDetail {
  /** The adapter's name (the exported file is `<name>.gguf`). */
  name: string;
  /** The chats it was applied to (those on the trainer's model). */
  chats: HTMLElement[];
}

/** Fired by <rullama-trainer> when "Use in chat" has applied the trained adapter. */
export class RullamaAdapterAppliedEvent extends CustomEvent<RullamaAdapterAppliedDetail> {
  static readonly type = 'rullama-adapter-applied';
  constructor(detail: RullamaAdapterAppliedDetail) {
    super(RullamaAdapterAppliedEvent.type, { detail, bubbles: true, composed: true });
  }
}
