/**
 * What the parts of <rullama-chat> (session, answers, adapters, persistence, view) reach of the
 * element: its public properties through `element`, and its internal reactive state and helpers
 * here, so that they stay out of the element's public API.
 */
import type { LoadProgressDetail } from '../../worker/protocol.js';
import type { RullamaChatState } from '../events/state.js';
import type { NeedsFolderError } from '../shared/model-input.js';
import type { RullamaChat } from './chat.js';
import type { ChatStrings } from './strings.js';
import type { ErrorInfo, MarkdownCache } from './view.js';

export interface ChatContext {
  readonly element: RullamaChat;
  /** The strings in use. */
  readonly text: ChatStrings;
  readonly state: RullamaChatState;
  /** Sets the state and fires `rullama-state` when it changes. */
  setState(state: RullamaChatState): void;
  /** Shows the error, sets the state to 'error' and fires `rullama-error`. */
  fail(error: unknown): void;
  /** Says `text` through the aria-live region. */
  announce(text: string): void;
  /** Reactive view state (each assignment re-renders). */
  progress: LoadProgressDetail | null;
  error: ErrorInfo | null;
  draft: string | null;
  needsFolder: NeedsFolderError | null;
  loaded: boolean;
  dragging: boolean;
  readonly announcement: string;
  readonly markdown: MarkdownCache;
}
