/**
 * Bounds that keep a hostile or corrupt header from hanging the parser or allocating gigabytes.
 * Every count is also checked against the bytes left in the file, which is the tighter bound in
 * practice; these constants cap what a valid-looking but absurd file could still ask for.
 */
/** Metadata entries (a real Gemma 4 blob has about 50). */
export const MAX_METADATA_COUNT = 1 << 20;
/** Tensors (a real Gemma 4 blob with vision and audio has about 2,000). */
export const MAX_TENSOR_COUNT = 1 << 20;
/** One string: keys, tensor names and token strings are short; chat templates are tens of KiB. */
export const MAX_STRING_BYTES = 16 << 20;
/** Elements in one metadata array (a vocabulary has 262,144 tokens and about 500,000 merges). */
export const MAX_ARRAY_LENGTH = 1 << 26;
/** Arrays nested in arrays. */
export const MAX_ARRAY_DEPTH = 4;
/** ggml tensors have at most four dimensions. */
export const MAX_TENSOR_DIMS = 4;
/** How much header to read per request; the header is parsed as it arrives. */
export const HEADER_CHUNK_BYTES = 1 << 20;
