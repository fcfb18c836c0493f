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
    /// A bug: an invariant of lmz itself is broken (never the input's fault). Please report it.
    #[error("internal error (a bug in lmz, please report it): {0}")]
    Internal(String),

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
            Error::Internal(_) => "LMZ_INTERNAL",
            Error::Io { .. } => "LMZ_IO",
        }
    }

    /// Every code `code()` can give, with what it means: the one list the npm package's
    /// `LibraryCodes` (`web/src/codes.ts`, generated from it by the test `codes_ts_is_current`)
    /// and through it the extension are made from.
    pub const CODES: &'static [(&'static str, &'static str)] = &[
        ("LMZ_GGUF", "The GGUF model source could not be read."),
        ("LMZ_PACK", "The model pack is damaged or not an lmz pack."),
        (
            "LMZ_MODEL_MISSING",
            "No model pack where one was expected: run `lmz model fetch`.",
        ),
        (
            "LMZ_HASH_MISMATCH",
            "A download or pack is not the pinned file (SHA-256 mismatch).",
        ),
        ("LMZ_FETCH", "The model could not be fetched."),
        ("LMZ_TOKENIZER", "The tokenizer's data is damaged."),
        ("LMZ_CONTEXT_OVERFLOW", "A position past the model's context."),
        ("LMZ_INVALID_ARGUMENT", "An argument out of range or of the wrong kind."),
        ("LMZ_FORMAT_BAD_MAGIC", "Not an lmz file."),
        (
            "LMZ_FORMAT_UNSUPPORTED_VERSION",
            "A version, flag or compact tag this reader does not know.",
        ),
        (
            "LMZ_FORMAT_MODEL_MISMATCH",
            "The file was made with another model pack.",
        ),
        ("LMZ_FORMAT_TRUNCATED", "The file ends too early."),
        (
            "LMZ_FORMAT_CHECKSUM",
            "The data decodes, but not to the original: the file is corrupt.",
        ),
        (
            "LMZ_FORMAT_CORRUPT",
            "The file is damaged (a length, table or stream that cannot be).",
        ),
        ("LMZ_GPU_NO_ADAPTER", "No GPU adapter."),
        ("LMZ_GPU_LIMITS", "The GPU adapter is too small for the model."),
        ("LMZ_GPU", "The GPU failed."),
        ("LMZ_CANCELLED", "The call was cancelled."),
        (
            "LMZ_INTERNAL",
            "A bug in lmz: an invariant broken, never the input's fault.",
        ),
        ("LMZ_IO", "Reading or writing a file failed."),
    ];

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
            Error::Internal(String::new()),
            Error::io("x", std::io::Error::other("x")),
        ];
        let mut codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        assert!(codes.iter().all(|c| c.starts_with("LMZ_")));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        // CODES lists exactly the codes of the variants.
        let mut listed: Vec<_> = Error::CODES.iter().map(|(c, _)| *c).collect();
        listed.sort();
        assert_eq!(listed, codes);
    }

    /// `web/src/codes.ts` as generated from `Error::CODES`.
    fn codes_ts() -> String {
        let mut t = String::from(
            "// GENERATED from crate/src/error.rs (`Error::CODES`) by the test `error::tests::codes_ts_is_current`:\n\
             // do not edit; change the Rust list and run `LMZ_BLESS=1 cargo test -p lmz --lib codes_ts`.\n\n\
             /** The codes of the Rust library, as errors from the wasm engine carry them. */\n\
             export const LibraryCodes = {\n",
        );
        for (code, what) in Error::CODES {
            t += &format!("  /** {what} */\n  {}: '{code}',\n", code.trim_start_matches("LMZ_"));
        }
        t += "} as const;\n";
        t
    }

    /// The npm package's copy of the codes is the Rust list, word for word (one source per
    /// contract): a code added here without regenerating the TypeScript fails this test.
    #[test]
    fn codes_ts_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/src/codes.ts");
        let want = codes_ts();
        if std::env::var_os("LMZ_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "{path} is not what Error::CODES gives: run `LMZ_BLESS=1 cargo test -p lmz --lib codes_ts`"
        );
    }
}
