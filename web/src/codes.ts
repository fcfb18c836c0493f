// GENERATED from crate/src/error.rs (`Error::CODES`) by the test `error::tests::codes_ts_is_current`:
// do not edit; change the Rust list and run `LMZ_BLESS=1 cargo test -p lmz --lib codes_ts`.

/** The codes of the Rust library, as errors from the wasm engine carry them. */
export const LibraryCodes = {
  /** The GGUF model source could not be read. */
  GGUF: 'LMZ_GGUF',
  /** The model pack is damaged or not an lmz pack. */
  PACK: 'LMZ_PACK',
  /** No model pack where one was expected: run `lmz model fetch`. */
  MODEL_MISSING: 'LMZ_MODEL_MISSING',
  /** A download or pack is not the pinned file (SHA-256 mismatch). */
  HASH_MISMATCH: 'LMZ_HASH_MISMATCH',
  /** The model could not be fetched. */
  FETCH: 'LMZ_FETCH',
  /** The tokenizer's data is damaged. */
  TOKENIZER: 'LMZ_TOKENIZER',
  /** A position past the model's context. */
  CONTEXT_OVERFLOW: 'LMZ_CONTEXT_OVERFLOW',
  /** An argument out of range or of the wrong kind. */
  INVALID_ARGUMENT: 'LMZ_INVALID_ARGUMENT',
  /** Not an lmz file. */
  FORMAT_BAD_MAGIC: 'LMZ_FORMAT_BAD_MAGIC',
  /** A version, flag or compact tag this reader does not know. */
  FORMAT_UNSUPPORTED_VERSION: 'LMZ_FORMAT_UNSUPPORTED_VERSION',
  /** The file was made with another model pack. */
  FORMAT_MODEL_MISMATCH: 'LMZ_FORMAT_MODEL_MISMATCH',
  /** The file ends too early. */
  FORMAT_TRUNCATED: 'LMZ_FORMAT_TRUNCATED',
  /** The data decodes, but not to the original: the file is corrupt. */
  FORMAT_CHECKSUM: 'LMZ_FORMAT_CHECKSUM',
  /** The file is damaged (a length, table or stream that cannot be). */
  FORMAT_CORRUPT: 'LMZ_FORMAT_CORRUPT',
  /** No GPU adapter. */
  GPU_NO_ADAPTER: 'LMZ_GPU_NO_ADAPTER',
  /** The GPU adapter is too small for the model. */
  GPU_LIMITS: 'LMZ_GPU_LIMITS',
  /** The GPU failed. */
  GPU: 'LMZ_GPU',
  /** The call was cancelled. */
  CANCELLED: 'LMZ_CANCELLED',
  /** A bug in lmz: an invariant broken, never the input's fault. */
  INTERNAL: 'LMZ_INTERNAL',
  /** Reading or writing a file failed. */
  IO: 'LMZ_IO',
} as const;
