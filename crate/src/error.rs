//! One error type for the whole library, grouped by section.
//!
//! Every variant has a stable machine-readable code (`Error::code`), which is what crosses
//! the wasm boundary and the worker as a JS `Error.name`; the `Display` text says what went
//! wrong and, where there is one, what to do about it.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    // --- model source (GGUF) and model pack ---
    #[error("GGUF: {0}")]
    Gguf(String),
    #[error("model pack: {0}")]
    Pack(String),
    #[error("model pack not found at {path}: run `lmz model fetch` (or pass --model PATH / set LMZ_MODEL)")]
    ModelMissing { path: String },
    #[error("hash mismatch for {what}: expected {expected}, got {actual}; the download is corrupt or not the pinned file — delete it and fetch again")]
    HashMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("model fetch failed: {0}")]
    Fetch(String),

    // --- tokenizer ---
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    // --- inference ---
    #[error("context overflow: position {pos} is past the model's context of {ctx} tokens")]
    ContextOverflow { pos: usize, ctx: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    // --- format (.lmz files and raw streams; every input is treated as hostile) ---
    #[error("not an lmz file: {0}")]
    FormatBadMagic(String),
    #[error(
        "unsupported lmz format version {version}: this lmz reads version(s) {supported}; a newer lmz made this file"
    )]
    FormatVersion { version: u32, supported: String },
    #[error("model mismatch: the file was made with the model pack whose fingerprint {wanted}, but the loaded pack is {have}; pass that pack with --model (see `lmz model`)")]
    FormatModelMismatch { wanted: String, have: String },
    #[error("truncated lmz data: {0}")]
    FormatTruncated(String),
    #[error("checksum mismatch: the data decodes to bytes whose checksum is {actual}, not {expected}; the file is corrupt (or was made with a different model pack)")]
    FormatChecksum { expected: String, actual: String },
    #[error("corrupt lmz data: {0}")]
    FormatCorrupt(String),

    // --- gpu ---
    #[error("no GPU adapter found ({0}); use --backend cpu, or install a Vulkan driver (Mesa lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)")]
    GpuNoAdapter(String),
    #[error("the GPU adapter {adapter} is too small for this model: {what}; use --backend cpu")]
    GpuLimits { adapter: String, what: String },
    #[error("GPU error: {0}")]
    Gpu(String),

    // --- control ---
    #[error("cancelled")]
    Cancelled,

    // --- io ---
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A stable identifier for this kind of error, for programs (and JS) to match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Gguf(_) => "LMZ_GGUF",
            Error::Pack(_) => "LMZ_PACK",
            Error::ModelMissing { .. } => "LMZ_MODEL_MISSING",
            Error::HashMismatch { .. } => "LMZ_HASH_MISMATCH",
            Error::Fetch(_) => "LMZ_FETCH",
            Error::Tokenizer(_) => "LMZ_TOKENIZER",
            Error::ContextOverflow { .. } => "LMZ_CONTEXT_OVERFLOW",
            Error::InvalidArgument(_) => "LMZ_INVALID_ARGUMENT",
            Error::FormatBadMagic(_) => "LMZ_FORMAT_BAD_MAGIC",
            Error::FormatVersion { .. } => "LMZ_FORMAT_UNSUPPORTED_VERSION",
            Error::FormatModelMismatch { .. } => "LMZ_FORMAT_MODEL_MISMATCH",
            Error::FormatTruncated(_) => "LMZ_FORMAT_TRUNCATED",
            Error::FormatChecksum { .. } => "LMZ_FORMAT_CHECKSUM",
            Error::FormatCorrupt(_) => "LMZ_FORMAT_CORRUPT",
            Error::GpuNoAdapter(_) => "LMZ_GPU_NO_ADAPTER",
            Error::GpuLimits { .. } => "LMZ_GPU_LIMITS",
            Error::Gpu(_) => "LMZ_GPU",
            Error::Cancelled => "LMZ_CANCELLED",
            Error::Io { .. } => "LMZ_IO",
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_prefixed() {
        let all = [
            Error::Gguf(String::new()),
            Error::Pack(String::new()),
            Error::ModelMissing { path: String::new() },
            Error::HashMismatch {
                what: String::new(),
                expected: String::new(),
                actual: String::new(),
            },
            Error::Fetch(String::new()),
            Error::Tokenizer(String::new()),
            Error::ContextOverflow { pos: 0, ctx: 0 },
            Error::InvalidArgument(String::new()),
            Error::FormatBadMagic(String::new()),
            Error::FormatVersion {
                version: 0,
                supported: String::new(),
            },
            Error::FormatModelMismatch {
                wanted: String::new(),
                have: String::new(),
            },
            Error::FormatTruncated(String::new()),
            Error::FormatChecksum {
                expected: String::new(),
                actual: String::new(),
            },
            Error::FormatCorrupt(String::new()),
            Error::GpuNoAdapter(String::new()),
            Error::GpuLimits {
                adapter: String::new(),
                what: String::new(),
            },
            Error::Gpu(String::new()),
            Error::Cancelled,
            Error::io("x", std::io::Error::other("x")),
        ];
        let mut codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        assert!(codes.iter().all(|c| c.starts_with("LMZ_")));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
