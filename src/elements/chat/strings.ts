/**
 * Every user-facing string of <rullama-chat>, replaceable through its `strings` property (i18n):
 * `chat.strings = { ...CHAT_STRINGS, send: 'Envoyer' }` (missing keys fall back to these).
 */
export const CHAT_STRINGS = {
  conversation: 'Conversation',
  you: 'You',
  assistant: 'Assistant',
  inputLabel: 'Message',
  placeholder: 'Ask anything… (Enter to send, Shift+Enter for a new line)',
  send: 'Send',
  stop: 'Stop',
  newChat: 'New chat',
  copy: 'Copy',
  copied: 'Copied',
  thinking: 'Thinking',
  thoughts: 'Thoughts',
  stopped: 'stopped',
  loadModel: 'Load the model',
  noModel: 'No model is set: give the element a model, ollama-model or model-ref attribute.',
  pickOllamaFolder: 'Choose your Ollama models folder',
  grantOllamaFolder: 'Allow reading the Ollama models folder',
  ollamaFolderHint: (model: string) => `To run ${model}, choose the folder where Ollama keeps its models (usually ~/.ollama/models). Nothing is uploaded.`,
  loading: 'Loading the model',
  phases: {
    check: 'Checking the cache',
    download: 'Downloading',
    verify: 'Checking the file',
    cached: 'Found in the cache',
    open: 'Reading the model',
    weights: 'Copying the weights to the GPU',
    kernels: 'Compiling the GPU kernels',
    ready: 'Ready',
  } as Record<string, string>,
  bytes: (loaded: number, total: number) => `${formatBytes(loaded)} of ${formatBytes(total)}`,
  timeLeft: (seconds: number) => (seconds >= 90 ? `about ${Math.round(seconds / 60)} min left` : `about ${Math.max(1, Math.round(seconds))} s left`),
  speed: (bytesPerSecond: number) => `${formatBytes(bytesPerSecond)}/s`,
  stats: (decode: number, ttftMs: number, tokens: number) => `${tokens} tokens · ${decode.toFixed(1)} tokens/s · first token after ${Math.round(ttftMs)} ms`,
  ready: (name: string) => `${name} is ready.`,
  answered: (text: string) => `Assistant: ${text}`,
  generating: 'Writing…',
  reading: 'Reading your message…',
  retry: 'Try again',
  reload: 'Reload the model',
  reloadPage: 'Reload the page',
  smallerContext: (size: number) => `Try a smaller context (${size} tokens)`,
  startOver: 'Start a new conversation',
  dismiss: 'Dismiss',
  errorTitle: 'Something went wrong',
  errors: {
    'no-webgpu':
      'This browser cannot run the model: it has no WebGPU. Use Chrome or Edge 113 or later (on Linux start it with --enable-unsafe-webgpu --enable-features=Vulkan), Safari 26 or later, or Firefox 141 or later on Windows. In Chrome, check chrome://gpu for "WebGPU: Hardware accelerated".',
    oom: 'The GPU ran out of memory. A smaller context needs less.',
    'device-lost': 'The GPU stopped responding (the driver reset it, or the tab was in the background too long). Reload the model to continue.',
    'context-overflow': 'The conversation no longer fits the model\'s context. Start a new conversation, or allow dropping old turns.',
    unsupported: 'This is not supported yet.',
  } as Record<string, string>,
};

export type ChatStrings = typeof CHAT_STRINGS;

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MB`;
  return `${Math.round(n / 1024)} KB`;
}
