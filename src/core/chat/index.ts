export {
  renderChat,
  encodeChat,
  stopTokens,
  stripThinking,
  MARKERS,
  BOS_TEXT,
  type ChatMessage,
  type ChatRole,
  type ChatContent,
  type ChatContentPart,
  type ChatToolCall,
  type RenderChatOptions,
  type ChatTool,
  type ChatFunction,
} from './template.js';
export { formatArgument, formatDeclaration, formatToolCall, formatToolResponse, type JsonValue } from './format.js';
