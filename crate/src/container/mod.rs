//! The `.lmz` container: how chunks of model-coded, zstd or stored bytes become a file, and
//! the compact forms for tiny inputs. The byte layout is specified in `docs/FORMAT.md`; this
//! module is its reference implementation.
//!
//! Data path: bytes → [`Tokenizer::encode`] → chunks of whole tokens → per chunk the
//! smallest of (model-coded tokens, zstd, stored) → header + chunk table + payloads.
//! Decompression reads the header (every field checked against what the remaining bytes can
//! hold before anything is allocated), then decodes each chunk independently: a model chunk
//! re-runs the context policy ([`crate::eval`]) over the tokens decoded so far, one token at a
//! time, which reproduces exactly the tables the compressor used.
//!
//! Pure: no file system, threads or clocks, generic over [`Backend`], so the same code runs
//! in the CLI, in wasm and with a GPU engine.

mod arena;
mod decode;
mod encode;
mod format;
mod many;
mod read;
mod segments;
mod stream;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::eval::Policy;
use crate::model::Fracs;
use crate::pack::{Config, Model};
use crate::tokenizer::Tokenizer;

pub use encode::{ModelUse, Options};
use format::TagPolicy;
pub use format::{
    max_model_tokens, ChunkInfo, Form, Info, Method, AUTO_MIN_BYTES_PER_TOKEN, COMPACT_FP_BYTES, DECODE_SLOTS,
    DEFAULT_CHUNK_TOKENS, FLAG_ADAPT, FLAG_KV_SHIFT, FLAG_NGRAM, MAGIC, MAX_TOKENS_PER_PAYLOAD_BYTE, MODEL_TOKEN_SLACK,
    TAG_MODEL, TAG_MODEL_ADAPT, TAG_MODEL_CHAT, TAG_MODEL_MIXED, TAG_MODEL_SHIFT, TAG_STORED, TAG_ZSTD, VERSION,
};
pub use many::ItemSink;
pub use read::{compact_to_raw, info, raw_to_compact};
pub use segments::{segment_len, SEGMENT_BYTES};

/// Where long work reports how far it got: `update(done, total)` (bytes). An error returned
/// by `update` — normally [`Error::Cancelled`] — stops the work at the next report and is
/// returned by it; nothing is written. Any `FnMut(u64, u64)` closure is a `Progress` that
/// never stops.
pub trait Progress {
    fn update(&mut self, done: u64, total: u64) -> Result<()>;
}

impl<F: FnMut(u64, u64) + ?Sized> Progress for F {
    fn update(&mut self, done: u64, total: u64) -> Result<()> {
        self(done, total);
        Ok(())
    }
}

// --- the codec ---

/// Everything compression needs from a model except the engine: config, tokenizer,
/// fixed-point scalars and fingerprint. Build it once per model; pass any [`Backend`].
pub struct Codec {
    cfg: Config,
    fracs: Fracs,
    tok: Tokenizer,
    fingerprint: [u8; 32],
    /// The note frame ([`Policy::chat`]), when the vocabulary has `<|im_start|>`.
    chat: Option<ChatFrame>,
}

/// The note frame's tokens: the start token `<|im_start|>`, and the tokens of `user\n`
/// that every framed chunk's tokens follow (known to both sides, coded as nothing).
struct ChatFrame {
    start: u32,
    known: Vec<u32>,
}

impl Codec {
    pub fn new(model: &Model) -> Result<Codec> {
        let tok = Tokenizer::new(&model.tokenizer)?;
        let chat = model
            .tokenizer
            .tokens
            .iter()
            .position(|t| t == "<|im_start|>")
            .map(|start| ChatFrame {
                start: start as u32,
                known: tok.encode(b"user\n"),
            });
        Ok(Codec {
            cfg: model.config().clone(),
            fracs: Fracs::new(&model.weights),
            tok,
            fingerprint: model.fingerprint,
            chat,
        })
    }

    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    pub fn default_policy(&self) -> Policy {
        Policy::default_for(&self.cfg)
    }

    /// The default policy in the note frame ([`Policy::chat`], compact tag `0xFE`): what a
    /// text of one chunk is coded with; `None` when the vocabulary has no `<|im_start|>`.
    pub fn chat_policy(&self) -> Option<Policy> {
        self.chat.as_ref().map(|c| Policy {
            chat: true,
            start: c.start,
            ..self.default_policy()
        })
    }

    /// The fixed policy a compact tag names.
    pub(super) fn tag_policy(&self, t: TagPolicy) -> Result<Policy> {
        if t.chat {
            return self.chat_policy().ok_or_else(|| {
                Error::FormatCorrupt("a text in the note frame, but the model has no <|im_start|>".into())
            });
        }
        Ok(Policy::for_tag(&self.cfg, t.kv, t.adapt, t.ngram))
    }

    /// The tokens a chunk coded under `p` follows, known to both sides ([`Policy::chat`]):
    /// run through the model first and coded as nothing (a heat map of a framed text scores
    /// them too and leaves them out, as the browser's `score` does).
    pub fn known(&self, p: &Policy) -> &[u32] {
        match (&self.chat, p.chat) {
            (Some(c), true) => &c.known,
            _ => &[],
        }
    }

    /// Whether the compact form can name `p` (its tag's fixed policy).
    fn has_tag(&self, p: &Policy) -> bool {
        let t = TagPolicy::of(p);
        self.tag_policy(t).is_ok_and(|q| q == *p) && Method::Model.tag(t).is_some()
    }

    fn check_backend<B: Backend>(&self, b: &B, p: &Policy) -> Result<()> {
        p.validate(&self.cfg)?;
        if b.cache_len() < p.window {
            return Err(Error::InvalidArgument(format!("the engine holds {} positions; the context policy needs {} (create it with a cache of at least the window)", b.cache_len(), p.window)));
        }
        Ok(())
    }
}
