//! The format's constants (docs/FORMAT.md) and what a file's header says.

use crate::eval::{KvMode, Policy};

/// First bytes of the full form. 0x89 is never the first byte of UTF-8 text.
pub const MAGIC: [u8; 4] = [0x89, b'L', b'M', b'Z'];
/// The full form's version this build writes and reads.
pub const VERSION: u8 = 1;
/// Fixed part of the full header, before the chunk table.
pub(super) const FIXED_HEADER: usize = 4 + 1 + 1 + 32 + 4 + 4 + 8 + 4 + 4;
/// Full-form flag: later windows keep their context in the KV cache ([`KvMode::Shift`]).
pub const FLAG_KV_SHIFT: u8 = 1;
/// Full-form flag: the model's tables are reweighted by the adaptive bias ([`crate::adapt`]).
pub const FLAG_ADAPT: u8 = 2;
/// Full-form flag: the n-gram mixer follows the adaptive bias ([`crate::ngram`]).
pub const FLAG_NGRAM: u8 = 4;
/// Every flag this version reads.
pub(super) const FLAGS_KNOWN: u8 = FLAG_KV_SHIFT | FLAG_ADAPT | FLAG_NGRAM;
/// Compact-form tags (first byte of a compact file, of a raw stream): the version, the
/// method and, for model-coded data, the context policy in one byte. 0xF8–0xFF never occur
/// in UTF-8.
pub const TAG_STORED: u8 = 0xF8;
pub const TAG_ZSTD: u8 = 0xF9;
/// Model-coded under [`Policy::recompute_for`] (the first format's policy).
pub const TAG_MODEL: u8 = 0xFA;
/// Model-coded under [`Policy::shift_for`].
pub const TAG_MODEL_SHIFT: u8 = 0xFB;
/// Model-coded under [`Policy::adaptive_for`].
pub const TAG_MODEL_ADAPT: u8 = 0xFC;
/// Model-coded under [`Policy::mixed_for`] (what this version writes for a text of
/// several chunks, or when the model has no chat tokens).
pub const TAG_MODEL_MIXED: u8 = 0xFD;
/// Model-coded under [`Policy::mixed_for`] in the note frame ([`Policy::chat`]): what this
/// version writes for a text of one chunk.
pub const TAG_MODEL_CHAT: u8 = 0xFE;
/// The last tag this version reads.
pub(super) const TAG_LAST: u8 = TAG_MODEL_CHAT;
/// Tags reserved for later compact versions (a decoder says "unsupported version").
pub(super) const TAG_RESERVED: std::ops::RangeInclusive<u8> = 0xFF..=0xFF;
/// Bytes of the model fingerprint that the compact form keeps.
pub const COMPACT_FP_BYTES: usize = 2;
/// Chunk size (tokens) when the caller does not choose one: a text of n tokens is cut into
/// max(1, floor(n / 16384)) chunks of equal size (16,384–32,767 tokens each). Measured on
/// alice29 (FORMAT.md, "Chunk size"): +0.6 % over one chunk, 17 chunks per MB of text.
pub const DEFAULT_CHUNK_TOKENS: usize = 16384;
/// In `ModelUse::Auto`, a chunk whose tokens average fewer bytes than this is not worth a
/// model run (random or binary data: ~1 byte per token); zstd or stored is chosen.
pub const AUTO_MIN_BYTES_PER_TOKEN: f64 = 1.5;
/// A model chunk holds at most this many tokens per payload byte (plus [`MODEL_TOKEN_SLACK`]):
/// encoders store such a chunk with zstd instead (it is extremely repetitive, where zstd
/// excels), and decoders reject more. Without it a few hostile bytes could claim a huge
/// length and keep the model running for hours: a near-certain token costs almost nothing
/// to code (a "decompression bomb"); with it, decoding work is at most 64 tokens per byte of
/// input.
pub const MAX_TOKENS_PER_PAYLOAD_BYTE: u64 = 64;
pub const MODEL_TOKEN_SLACK: u64 = 64;

/// The most tokens a model chunk with `payload` bytes may hold.
pub fn max_model_tokens(payload: usize) -> u64 {
    (payload as u64)
        .saturating_mul(MAX_TOKENS_PER_PAYLOAD_BYTE)
        .saturating_add(MODEL_TOKEN_SLACK)
}
/// Consecutive stored/zstd chunks are merged up to this many bytes.
pub(super) const MERGE_LIMIT: usize = 1 << 22;
/// zstd level for chunks the model does not help.
#[cfg(feature = "zstd")]
pub(super) const ZSTD_LEVEL: i32 = 19;
/// Largest zstd window a decoder accepts (bounds its memory on hostile input).
pub(super) const ZSTD_MAX_WINDOW: u64 = 1 << 23;

/// How a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The bytes as they are.
    Stored = 0,
    /// A zstd frame.
    Zstd = 1,
    /// Range-coded tokens under the model.
    Model = 2,
}

impl Method {
    pub(super) fn from_u8(b: u8) -> Option<Method> {
        match b {
            0 => Some(Method::Stored),
            1 => Some(Method::Zstd),
            2 => Some(Method::Model),
            _ => None,
        }
    }
    /// The compact tag of a chunk coded this way under the fixed policy `t` names; `None`
    /// for a model chunk under a policy without a tag.
    pub(super) fn tag(self, t: TagPolicy) -> Option<u8> {
        let TagPolicy { kv, adapt, ngram, chat } = t;
        match (self, kv, adapt, ngram, chat) {
            (Method::Stored, ..) => Some(TAG_STORED),
            (Method::Zstd, ..) => Some(TAG_ZSTD),
            (Method::Model, KvMode::Recompute, false, false, false) => Some(TAG_MODEL),
            (Method::Model, KvMode::Shift, false, false, false) => Some(TAG_MODEL_SHIFT),
            (Method::Model, KvMode::Shift, true, false, false) => Some(TAG_MODEL_ADAPT),
            (Method::Model, KvMode::Shift, true, true, false) => Some(TAG_MODEL_MIXED),
            (Method::Model, KvMode::Shift, true, true, true) => Some(TAG_MODEL_CHAT),
            (Method::Model, ..) => None,
        }
    }
    /// A compact tag's method and policy (the policy only matters to model-coded data; the
    /// stored and zstd tags say what this version writes for more than one chunk).
    pub(super) fn from_tag(t: u8) -> Option<(Method, TagPolicy)> {
        let p = |kv, adapt, ngram, chat| TagPolicy { kv, adapt, ngram, chat };
        match t {
            TAG_STORED => Some((Method::Stored, p(KvMode::Shift, true, true, false))),
            TAG_ZSTD => Some((Method::Zstd, p(KvMode::Shift, true, true, false))),
            TAG_MODEL => Some((Method::Model, p(KvMode::Recompute, false, false, false))),
            TAG_MODEL_SHIFT => Some((Method::Model, p(KvMode::Shift, false, false, false))),
            TAG_MODEL_ADAPT => Some((Method::Model, p(KvMode::Shift, true, false, false))),
            TAG_MODEL_MIXED => Some((Method::Model, p(KvMode::Shift, true, true, false))),
            TAG_MODEL_CHAT => Some((Method::Model, p(KvMode::Shift, true, true, true))),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Method::Stored => "stored",
            Method::Zstd => "zstd",
            Method::Model => "model",
        }
    }
}

/// The part of a context policy a compact tag names (the windows follow from it:
/// [`Policy::for_tag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagPolicy {
    pub kv: KvMode,
    pub adapt: bool,
    pub ngram: bool,
    pub chat: bool,
}

impl TagPolicy {
    pub fn of(p: &Policy) -> TagPolicy {
        TagPolicy {
            kv: p.kv,
            adapt: p.adapt,
            ngram: p.ngram,
            chat: p.chat,
        }
    }
}

/// Which layout a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Full,
    Compact,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub method: Method,
    pub original_len: u64,
    pub stored_len: u64,
}

/// What a file's header says (no model needed to read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub form: Form,
    pub version: u32,
    /// The model pack's SHA-256 (full form) or its first [`COMPACT_FP_BYTES`] bytes.
    pub fingerprint: Vec<u8>,
    pub original_len: u64,
    pub compressed_len: u64,
    /// Full form: crc32 of the original. Compact: the 16-bit check.
    pub checksum: u32,
    /// Full form: the policy's (window, stride). Compact: `None` (the model's fixed policy
    /// for the tag: [`Policy::recompute_for`] or [`Policy::shift_for`]).
    pub window_stride: Option<(u32, u32)>,
    /// How later windows get their context (full form: the flags; compact: the tag).
    pub kv: KvMode,
    /// Whether the tables are reweighted by the adaptive bias (full form: the flags;
    /// compact: the tag).
    pub adapt: bool,
    /// Whether the n-gram mixer follows (full form: the flags; compact: the tag).
    pub ngram: bool,
    /// Whether the text is in the note frame ([`Policy::chat`]; compact tag `0xFE` only).
    pub chat: bool,
    pub chunks: Vec<ChunkInfo>,
}

/// The most chunks decoded in lock-step (the CLI and the browser alike). Each slot's KV
/// cache is ~47 MB at window 2048: 4 slots decoding 4 long chunks peak at ~295 MB in the CLI
/// (scripts/memory.sh; the goal is 400 MB).
pub const DECODE_SLOTS: usize = 4;

impl Info {
    /// The sequence slots to open an engine with for this file: one per model chunk, which
    /// then decode in lock-step (each step reads the weights once for all of them), at most
    /// [`DECODE_SLOTS`], at least 1.
    pub fn decode_slots(&self) -> usize {
        self.chunks
            .iter()
            .filter(|c| c.method == Method::Model)
            .count()
            .clamp(1, DECODE_SLOTS)
    }

    /// Bits per byte of the original, every header byte included.
    pub fn bpb(&self) -> f64 {
        if self.original_len == 0 {
            0.0
        } else {
            8.0 * self.compressed_len as f64 / self.original_len as f64
        }
    }
}
