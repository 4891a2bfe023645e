/**
 * "Use in chat": the <rullama-chat> elements on the trainer's model get the trained adapter. A
 * chat is on the same model when both name the same source (the same <rullama-model>, model URL,
 * File or Ollama model); they then share one model in the worker, which applies the adapter it
 * holds to the chat's conversation (no file is read, the model is not reloaded).
 */
import { TrainedAdapter } from '../../client/training.js';
import type { RullamaChat } from '../chat/chat.js';
import type { RullamaModel } from '../model/model.js';

interface SourceProps {
  file?: Blob | null;
  model?: string | null;
  ollamaModel?: string | null;
  modelRef?: string | null;
}

/** What names the model an element loads: a File, an absolute URL or an Ollama model name. */
export function modelIdentity(el: HTMLElement & SourceProps): Blob | string | null {
  let props: SourceProps & { src?: string | null } = el;
  if (el.modelRef) {
    const root = el.getRootNode() as Document | ShadowRoot;
    const model = (root.getElementById?.(el.modelRef) ?? document.getElementById(el.modelRef)) as RullamaModel | null;
    if (!model) return null;
    props = { file: model.file, model: model.src, ollamaModel: model.ollamaModel };
  }
  if (props.file) return props.file;
  if (props.ollamaModel) return `ollama:${props.ollamaModel}`;
  if (props.model) return `url:${new URL(props.model, document.baseURI).href}`;
  return null;
}

/** The chats of the page (and of the trainer's shadow-root host, if any) on the trainer's model. */
export function chatsOnModel(trainer: HTMLElement & SourceProps): RullamaChat[] {
  const identity = modelIdentity(trainer);
  if (identity === null) return [];
  const roots = new Set<Document | ShadowRoot>([document, trainer.getRootNode() as Document | ShadowRoot]);
  const chats = new Set<RullamaChat>();
  for (const root of roots) for (const chat of root.querySelectorAll('rullama-chat')) chats.add(chat as RullamaChat);
  return [...chats].filter((chat) => modelIdentity(chat) === identity);
}

/** Gives each chat the adapter (replacing one this trainer gave before; other adapters stay). */
export function applyToChats(chats: readonly RullamaChat[], adapter: TrainedAdapter, scale = 1): void {
  for (const chat of chats) {
    const others = (chat.adapters ?? []).filter((a) => !(a.source instanceof TrainedAdapter && a.source.job === adapter.job));
    chat.adapters = [...others, { source: adapter, scale }];
  }
}
