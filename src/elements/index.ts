export { RullamaInspect, INSPECT_STRINGS } from './inspect/inspect.js';
export { RullamaChat } from './chat/chat.js';
export type { ChatAdapter } from './chat/adapters.js';
export { CHAT_STRINGS, type ChatStrings } from './chat/strings.js';
export { renderMarkdown, splitThinking } from './chat/markdown.js';
export { RullamaModel } from './model/model.js';
export { defineElements } from './define.js';
export * from './events/index.js';
