export { Tokenizer, StreamDecoder, type EncodeOptions, type DecodeOptions, type TokenizerSummary } from './tokenizer.js';
export { TokenType, TokenAttr, GEMMA4_EOG_STRINGS } from './vocab.js';
