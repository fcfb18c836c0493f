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

use crate::adapt::Online;
use crate::backend::Backend;
use crate::coder::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::eval::{score_ranges_async, window_at, KvMode, Policy, Window};
use crate::model::{block_on, forward_async, Batch, Fracs};
use crate::pack::{hex, Config, Model};
use crate::tokenizer::Tokenizer;
use std::io::Read;

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

// --- format constants (docs/FORMAT.md) ---

/// First bytes of the full form. 0x89 is never the first byte of UTF-8 text.
pub const MAGIC: [u8; 4] = [0x89, b'L', b'M', b'Z'];
/// The full form's version this build writes and reads.
pub const VERSION: u8 = 1;
/// Fixed part of the full header, before the chunk table.
const FIXED_HEADER: usize = 4 + 1 + 1 + 32 + 4 + 4 + 8 + 4 + 4;
/// Full-form flag: later windows keep their context in the KV cache ([`KvMode::Shift`]).
pub const FLAG_KV_SHIFT: u8 = 1;
/// Full-form flag: the model's tables are reweighted by the adaptive bias ([`crate::adapt`]).
pub const FLAG_ADAPT: u8 = 2;
/// Full-form flag: the n-gram mixer follows the adaptive bias ([`crate::ngram`]).
pub const FLAG_NGRAM: u8 = 4;
/// Every flag this version reads.
const FLAGS_KNOWN: u8 = FLAG_KV_SHIFT | FLAG_ADAPT | FLAG_NGRAM;
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
/// Model-coded under [`Policy::mixed_for`] (what this version writes).
pub const TAG_MODEL_MIXED: u8 = 0xFD;
/// The last tag this version reads.
const TAG_LAST: u8 = TAG_MODEL_MIXED;
/// Tags reserved for later compact versions (a decoder says "unsupported version").
const TAG_RESERVED: std::ops::RangeInclusive<u8> = 0xFE..=0xFF;
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
    (payload as u64).saturating_mul(MAX_TOKENS_PER_PAYLOAD_BYTE).saturating_add(MODEL_TOKEN_SLACK)
}
/// Consecutive stored/zstd chunks are merged up to this many bytes.
const MERGE_LIMIT: usize = 1 << 22;
/// zstd level for chunks the model does not help.
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = 19;
/// Largest zstd window a decoder accepts (bounds its memory on hostile input).
const ZSTD_MAX_WINDOW: u64 = 1 << 23;

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
    fn from_u8(b: u8) -> Option<Method> {
        match b {
            0 => Some(Method::Stored),
            1 => Some(Method::Zstd),
            2 => Some(Method::Model),
            _ => None,
        }
    }
    /// The compact tag of a chunk coded this way under the fixed policy `(kv, adapt, ngram)`
    /// names; `None` for a model chunk under a policy without a tag.
    fn tag(self, kv: KvMode, adapt: bool, ngram: bool) -> Option<u8> {
        match (self, kv, adapt, ngram) {
            (Method::Stored, ..) => Some(TAG_STORED),
            (Method::Zstd, ..) => Some(TAG_ZSTD),
            (Method::Model, KvMode::Recompute, false, false) => Some(TAG_MODEL),
            (Method::Model, KvMode::Shift, false, false) => Some(TAG_MODEL_SHIFT),
            (Method::Model, KvMode::Shift, true, false) => Some(TAG_MODEL_ADAPT),
            (Method::Model, KvMode::Shift, true, true) => Some(TAG_MODEL_MIXED),
            (Method::Model, ..) => None,
        }
    }
    /// A compact tag's method and policy `(kv, adapt, ngram)` (the policy only matters to
    /// model-coded data; the stored and zstd tags say what this version writes).
    fn from_tag(t: u8) -> Option<(Method, KvMode, bool, bool)> {
        match t {
            TAG_STORED => Some((Method::Stored, KvMode::Shift, true, true)),
            TAG_ZSTD => Some((Method::Zstd, KvMode::Shift, true, true)),
            TAG_MODEL => Some((Method::Model, KvMode::Recompute, false, false)),
            TAG_MODEL_SHIFT => Some((Method::Model, KvMode::Shift, false, false)),
            TAG_MODEL_ADAPT => Some((Method::Model, KvMode::Shift, true, false)),
            TAG_MODEL_MIXED => Some((Method::Model, KvMode::Shift, true, true)),
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

/// When the compressor runs the model on a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelUse {
    /// When the chunk looks like text to the tokenizer ([`AUTO_MIN_BYTES_PER_TOKEN`]).
    Auto,
    /// On every chunk (the smallest encoding still wins).
    Always,
    /// On every chunk, and keep its output even when stored or zstd would be smaller (for
    /// tests and for measuring the model) — unless it breaks the 64-tokens-per-byte rule
    /// ([`MAX_TOKENS_PER_PAYLOAD_BYTE`]).
    Force,
    /// Never: zstd or stored only.
    Never,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Tokens per chunk (the last chunk may be shorter; a chunk never splits an escape pair).
    pub chunk_tokens: usize,
    /// The context policy; `None`: the model's default ([`Policy::default_for`]).
    pub policy: Option<Policy>,
    pub model: ModelUse,
    /// Allow the compact form for single-chunk inputs under the default policy.
    pub compact: bool,
    /// Input is tokenized and cut into chunks one segment of at most this many bytes at a
    /// time ([`segment_len`]): what memory holds of a long input. [`SEGMENT_BYTES`] unless a
    /// test wants many segments; every build uses the default, so they make the same files.
    pub segment_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { chunk_tokens: DEFAULT_CHUNK_TOKENS, policy: None, model: ModelUse::Auto, compact: true, segment_bytes: SEGMENT_BYTES }
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
        self.chunks.iter().filter(|c| c.method == Method::Model).count().clamp(1, DECODE_SLOTS)
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

// --- byte reading (hostile input) ---

fn truncated<T>(what: &str) -> Result<T> {
    Err(Error::FormatTruncated(format!("the data ends inside {what}")))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.b.len() - self.pos < n {
            return truncated(what);
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    /// LEB128, at most 10 bytes, minimal (no redundant trailing zero groups), < 2^64.
    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = (b & 0x7F) as u64;
            if i == 9 && b > 1 {
                return Err(Error::FormatCorrupt(format!("{what} does not fit 64 bits")));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(Error::FormatCorrupt(format!("{what} is not a minimal varint")));
                }
                return Ok(v);
            }
        }
        Err(Error::FormatCorrupt(format!("{what} is longer than 10 bytes")))
    }
    fn rest(&self) -> &'a [u8] {
        &self.b[self.pos..]
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The compact forms' 16-bit check: the low half of crc32(fingerprint ‖ original), so a
/// wrong model is caught too.
fn check16(fingerprint: &[u8; 32], data: &[u8]) -> u16 {
    let mut h = crc32fast::Hasher::new();
    h.update(fingerprint);
    h.update(data);
    h.finalize() as u16
}

// --- parsing ---

/// A parsed file: its info and each chunk's payload.
struct Parsed<'a> {
    info: Info,
    payloads: Vec<&'a [u8]>,
}

fn parse(file: &[u8]) -> Result<Parsed<'_>> {
    match file.first() {
        None => Err(Error::FormatTruncated("the data is empty (an lmz file has at least a 1-byte tag)".into())),
        Some(&0x89) => parse_full(file),
        Some(&t) if Method::from_tag(t).is_some() => parse_compact(file),
        Some(&t) if TAG_RESERVED.contains(&t) => Err(Error::FormatVersion { version: t as u32, supported: format!("full {VERSION}, compact tags 0x{TAG_STORED:02X}–0x{TAG_LAST:02X}") }),
        Some(_) => Err(Error::FormatBadMagic(format!("it starts with {} (an lmz file starts with 89 4C 4D 5A or a byte F8–FD)", hex(&file[..file.len().min(4)])))),
    }
}

fn parse_full(file: &[u8]) -> Result<Parsed<'_>> {
    let mut c = Cursor { b: file, pos: 0 };
    let magic = c.take(4, "the magic bytes").map_err(|_| Error::FormatBadMagic(format!("only {} byte(s)", file.len())))?;
    if magic != MAGIC {
        return Err(Error::FormatBadMagic(format!("it starts with {} (an lmz file starts with 89 4C 4D 5A)", hex(magic))));
    }
    let version = c.u8("the version")?;
    if version != VERSION {
        return Err(Error::FormatVersion { version: version as u32, supported: VERSION.to_string() });
    }
    let flags = c.u8("the flags")?;
    let fp = c.take(32, "the model fingerprint")?.to_vec();
    let window = c.u32("the policy")?;
    let stride = c.u32("the policy")?;
    let original_len = c.u64("the original length")?;
    let checksum = c.u32("the checksum")?;
    let count = c.u32("the chunk count")? as usize;
    // Every entry takes at least 3 bytes, and the header checksum 4 more.
    if count > c.rest().len().saturating_sub(4) / 3 {
        return truncated(&format!("the chunk table ({count} chunks cannot fit in {} bytes)", c.rest().len()));
    }
    let mut chunks = Vec::with_capacity(count);
    let (mut sum_orig, mut sum_stored) = (0u64, 0u64);
    for i in 0..count {
        let what = format!("chunk table entry {i}");
        let m = c.u8(&what)?;
        let original_len = c.varint(&what)?;
        let stored_len = c.varint(&what)?;
        let method = Method::from_u8(m).ok_or_else(|| Error::FormatCorrupt(format!("chunk {i} has unknown method {m}")))?;
        sum_orig = sum_orig.checked_add(original_len).ok_or_else(|| Error::FormatCorrupt("chunk lengths overflow".into()))?;
        sum_stored = sum_stored.checked_add(stored_len).ok_or_else(|| Error::FormatCorrupt("chunk lengths overflow".into()))?;
        chunks.push(ChunkInfo { method, original_len, stored_len });
    }
    let header_end = c.pos;
    let hcrc = c.u32("the header checksum")?;
    if crc32fast::hash(&file[..header_end]) != hcrc {
        return Err(Error::FormatCorrupt("the header checksum does not match: the header is damaged".into()));
    }
    if flags & !FLAGS_KNOWN != 0 {
        return Err(Error::FormatVersion { version: version as u32 * 256 + flags as u32, supported: format!("{VERSION} with flags 0–{FLAGS_KNOWN}") });
    }
    let kv = if flags & FLAG_KV_SHIFT != 0 { KvMode::Shift } else { KvMode::Recompute };
    let adapt = flags & FLAG_ADAPT != 0;
    let ngram = flags & FLAG_NGRAM != 0;
    if sum_orig != original_len {
        return Err(Error::FormatCorrupt(format!("the chunks add up to {sum_orig} bytes, the header says {original_len}")));
    }
    let rest = c.rest().len() as u64;
    if sum_stored > rest {
        return Err(Error::FormatTruncated(format!("the chunks need {sum_stored} bytes after the header, the data has {rest}")));
    }
    if sum_stored < rest {
        return Err(Error::FormatCorrupt(format!("{} unexpected byte(s) after the last chunk (concatenated files?)", rest - sum_stored)));
    }
    let mut payloads = Vec::with_capacity(count);
    for ch in &chunks {
        // Σ stored_len = rest: every take succeeds and every length fits usize.
        payloads.push(c.take(ch.stored_len as usize, "a chunk")?);
    }
    let info = Info { form: Form::Full, version: version as u32, fingerprint: fp, original_len, compressed_len: file.len() as u64, checksum, window_stride: Some((window, stride)), kv, adapt, ngram, chunks };
    Ok(Parsed { info, payloads })
}

fn parse_compact(file: &[u8]) -> Result<Parsed<'_>> {
    let mut c = Cursor { b: file, pos: 0 };
    let tag = c.u8("the tag")?;
    let fp = c.take(COMPACT_FP_BYTES, "the model fingerprint")?.to_vec();
    let original_len = c.varint("the original length")?;
    let check = c.take(2, "the check")?;
    let checksum = u16::from_le_bytes([check[0], check[1]]) as u32;
    let payload = c.rest();
    let (method, kv, adapt, ngram) = Method::from_tag(tag).ok_or_else(|| Error::FormatCorrupt(format!("tag {tag:02X}")))?;
    let chunks = if original_len == 0 && payload.is_empty() { vec![] } else { vec![ChunkInfo { method, original_len, stored_len: payload.len() as u64 }] };
    let info = Info { form: Form::Compact, version: 1, fingerprint: fp, original_len, compressed_len: file.len() as u64, checksum, window_stride: None, kv, adapt, ngram, chunks };
    Ok(Parsed { info, payloads: vec![payload] })
}

/// Reads a file's header: form, version, model fingerprint, sizes, chunks. Needs no model.
pub fn info(file: &[u8]) -> Result<Info> {
    parse(file).map(|p| p.info)
}

/// A raw stream's tag, method, policy, check and payload (docs/FORMAT.md, "Raw stream").
#[allow(clippy::type_complexity)]
fn split_raw(raw: &[u8]) -> Result<(u8, Method, (KvMode, bool, bool), u16, &[u8])> {
    let (&tag, rest) = raw.split_first().ok_or_else(|| Error::FormatTruncated("the raw stream is empty".into()))?;
    let (method, kv, adapt, ngram) = match Method::from_tag(tag) {
        Some(m) => m,
        None if TAG_RESERVED.contains(&tag) => return Err(Error::FormatVersion { version: tag as u32, supported: format!("raw tags 0x{TAG_STORED:02X}–0x{TAG_LAST:02X}") }),
        None => return Err(Error::FormatBadMagic(format!("raw stream tag {tag:02X} (expected F8–FD)"))),
    };
    if rest.len() < 2 {
        return truncated("the check");
    }
    Ok((tag, method, (kv, adapt, ngram), u16::from_le_bytes([rest[0], rest[1]]), &rest[2..]))
}

/// The standalone compact file holding a raw stream of `len` original bytes made with the
/// model pack whose SHA-256 is `fingerprint`: the raw stream with the fingerprint's first
/// bytes and the length put back (both forms carry the same check, over the whole
/// fingerprint and the original). No model runs; the bytes equal what
/// [`Codec::compress`] writes in the compact form when it picks the same method. A wrong
/// `len` or `fingerprint` is not detected here but on decoding (`LMZ_FORMAT_CHECKSUM` or
/// `LMZ_FORMAT_CORRUPT`), as for the raw stream itself.
pub fn raw_to_compact(fingerprint: &[u8; 32], raw: &[u8], len: u64) -> Result<Vec<u8>> {
    let (tag, _, _, check, payload) = split_raw(raw)?;
    let mut out = Vec::with_capacity(raw.len() + COMPACT_FP_BYTES + 10);
    out.push(tag);
    out.extend_from_slice(&fingerprint[..COMPACT_FP_BYTES]);
    put_varint(&mut out, len);
    out.extend_from_slice(&check.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

// --- segments: compression's input in bounded pieces ---

/// Compression tokenizes and cuts its input one segment of at most this many bytes at a
/// time ([`segment_len`]), so memory never holds more than a segment's bytes and tokens
/// however long the input. Part of what a file looks like (where chunks end), not of the
/// format: any reader decodes any cut. Inputs up to this size are one segment.
pub const SEGMENT_BYTES: usize = 8 << 20;

/// The length of the next segment at the start of `buf`, where `buf` holds at least
/// `max` bytes of the input or (`eof`) all of its rest. The whole rest when it fits in
/// `max`; otherwise a cut after the last line end (`\n`) in the last eighth of the first
/// `max` bytes, or failing that before the last UTF-8 lead byte there, or at `max`. The cut
/// depends only on the first `max` bytes, so reading in any pieces gives the same segments.
pub fn segment_len(buf: &[u8], eof: bool, max: usize) -> usize {
    let max = max.max(8);
    if eof && buf.len() <= max {
        return buf.len();
    }
    let head = &buf[..max.min(buf.len())];
    if head.len() < 8 {
        return head.len();
    }
    let from = head.len() - head.len() / 8;
    if let Some(i) = head[from..].iter().rposition(|&c| c == b'\n') {
        return from + i + 1;
    }
    // Not inside a UTF-8 sequence: before the last byte that is not a continuation byte.
    match head[head.len() - 4..].iter().rposition(|&c| c & 0xC0 != 0x80) {
        Some(i) if head.len() - 4 + i > 0 => head.len() - 4 + i,
        _ => head.len(),
    }
}

/// Compression's input, one segment at a time.
trait Segments {
    /// The next segment ([`segment_len`] of what is left), or `None` at the end.
    fn next_segment(&mut self) -> Result<Option<&[u8]>>;
}

/// An input already in memory.
struct SliceSegments<'a> {
    rest: &'a [u8],
    max: usize,
}

impl Segments for SliceSegments<'_> {
    fn next_segment(&mut self) -> Result<Option<&[u8]>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (seg, rest) = self.rest.split_at(segment_len(self.rest, true, self.max));
        self.rest = rest;
        Ok(Some(seg))
    }
}

/// An input read as it goes; holds at most one segment (plus what a cut left over).
struct ReadSegments<'a> {
    input: &'a mut dyn Read,
    max: usize,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out.
    used: usize,
    eof: bool,
}

impl Segments for ReadSegments<'_> {
    fn next_segment(&mut self) -> Result<Option<&[u8]>> {
        self.buf.drain(..self.used);
        self.used = 0;
        let max = self.max.max(8); // as segment_len counts
        if !self.eof && self.buf.len() < max {
            let want = max - self.buf.len();
            // Reads until `want` bytes or the end (read_to_end retries interruptions).
            let got = (&mut *self.input).take(want as u64).read_to_end(&mut self.buf).map_err(|e| Error::io("(input)", e))?;
            self.eof = got < want;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.used = segment_len(&self.buf, self.eof, self.max);
        Ok(Some(&self.buf[..self.used]))
    }
}

/// A segment's progress as the whole input's: `base` bytes came before it.
struct Offset<'a> {
    inner: &'a mut dyn Progress,
    base: u64,
    total: u64,
}

impl Progress for Offset<'_> {
    fn update(&mut self, done: u64, _: u64) -> Result<()> {
        let d = self.base + done;
        self.inner.update(d, self.total.max(d))
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
}

/// One chunk on the way in: its tokens and bytes.
struct Piece<'a> {
    tokens: &'a [u32],
    bytes: &'a [u8],
}

impl Codec {
    pub fn new(model: &Model) -> Result<Codec> {
        Ok(Codec { cfg: model.config().clone(), fracs: Fracs::new(&model.weights), tok: Tokenizer::new(&model.tokenizer)?, fingerprint: model.fingerprint })
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

    /// Whether the compact form can name `p` (its tag's fixed policy).
    fn has_tag(&self, p: &Policy) -> bool {
        *p == Policy::for_tag(&self.cfg, p.kv, p.adapt, p.ngram) && Method::Model.tag(p.kv, p.adapt, p.ngram).is_some()
    }

    fn check_backend<B: Backend>(&self, b: &B, p: &Policy) -> Result<()> {
        p.validate(&self.cfg)?;
        if b.cache_len() < p.window {
            return Err(Error::InvalidArgument(format!("the engine holds {} positions; the context policy needs {} (create it with a cache of at least the window)", b.cache_len(), p.window)));
        }
        Ok(())
    }

    /// Compresses `data` into a standalone `.lmz` file (full or compact form).
    /// `progress(done, total)` counts input bytes. Synchronous: for engines whose readback
    /// never waits (the CPU, a native GPU); a browser's GPU needs [`Codec::compress_async`].
    pub fn compress<B: Backend>(&self, b: &mut B, data: &[u8], opts: &Options, progress: &mut dyn Progress) -> Result<Vec<u8>> {
        block_on(self.compress_async(b, data, opts, progress))
    }

    /// [`Codec::compress`] for any engine: awaits the engine's readbacks.
    pub async fn compress_async<B: Backend>(&self, b: &mut B, data: &[u8], opts: &Options, progress: &mut dyn Progress) -> Result<Vec<u8>> {
        let mut payloads = Vec::new();
        let mut src = SliceSegments { rest: data, max: opts.segment_bytes };
        let head = self.compress_from(b, &mut src, data.len() as u64, opts, progress, &mut |p| {
            payloads.extend_from_slice(p);
            Ok(())
        }).await?;
        let mut out = head;
        out.extend_from_slice(&payloads);
        Ok(out)
    }

    /// [`Codec::compress`] with bounded memory for inputs of any size: reads `input` one
    /// segment ([`Options::segment_bytes`]) at a time, hands each chunk's payload to `payloads` as
    /// soon as it is made, and returns the head — the bytes that go *before* all payloads
    /// (the full form's header and chunk table, or the compact form's few bytes). The file
    /// is `head ‖ payloads`, byte for byte what [`Codec::compress`] makes of the same input.
    /// `total` (the input's length if known, else 0) only feeds `progress`. Synchronous,
    /// like [`Codec::compress`].
    pub fn compress_stream<B: Backend>(&self, b: &mut B, input: &mut dyn Read, total: u64, opts: &Options, progress: &mut dyn Progress, payloads: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        let mut src = ReadSegments { input, max: opts.segment_bytes, buf: Vec::new(), used: 0, eof: false };
        block_on(self.compress_from(b, &mut src, total, opts, progress, payloads))
    }

    /// The one compressor behind [`Codec::compress_async`] and [`Codec::compress_stream`]:
    /// segment by segment, chunks encoded and their payloads passed on at once; the head is
    /// made last, when the length, checksum and chunk table are known.
    async fn compress_from<B: Backend>(&self, b: &mut B, src: &mut dyn Segments, total: u64, opts: &Options, progress: &mut dyn Progress, payloads: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        let policy = opts.policy.unwrap_or_else(|| self.default_policy());
        let (mut crc, mut check) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
        check.update(&self.fingerprint);
        let mut table: Vec<ChunkInfo> = Vec::new();
        let mut len = 0u64;
        while let Some(seg) = src.next_segment()? {
            crc.update(seg);
            check.update(seg);
            let mut seg_progress = Offset { inner: &mut *progress, base: len, total };
            for c in self.encode_chunks(b, seg, opts, &policy, &mut seg_progress).await? {
                payloads(&c.payload)?;
                table.push(ChunkInfo { method: c.method, original_len: c.original_len as u64, stored_len: c.payload.len() as u64 });
            }
            len += seg.len() as u64;
        }
        // A nonempty segment makes at least one chunk: one chunk means one segment.
        if opts.compact && self.has_tag(&policy) && table.len() <= 1 {
            let method = table.first().map_or(Method::Stored, |c| c.method);
            // has_tag: every method has a tag under this policy.
            let tag = method.tag(policy.kv, policy.adapt, policy.ngram).ok_or_else(|| Error::InvalidArgument("internal: a policy without a compact tag".into()))?;
            let mut out = vec![tag];
            out.extend_from_slice(&self.fingerprint[..COMPACT_FP_BYTES]);
            put_varint(&mut out, len);
            out.extend_from_slice(&(check.finalize() as u16).to_le_bytes());
            return Ok(out);
        }
        let mut out = Vec::with_capacity(FIXED_HEADER + 24 * table.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if policy.kv == KvMode::Shift { FLAG_KV_SHIFT } else { 0 } | if policy.adapt { FLAG_ADAPT } else { 0 } | if policy.ngram { FLAG_NGRAM } else { 0 });
        out.extend_from_slice(&self.fingerprint);
        // validate() bounds the window by the model's context, far below 2^32.
        out.extend_from_slice(&(policy.window as u32).to_le_bytes());
        out.extend_from_slice(&(policy.stride as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        let count = u32::try_from(table.len()).map_err(|_| Error::InvalidArgument("more than 2^32 chunks: use larger chunks".into()))?;
        out.extend_from_slice(&count.to_le_bytes());
        for c in &table {
            out.push(c.method as u8);
            put_varint(&mut out, c.original_len);
            put_varint(&mut out, c.stored_len);
        }
        let hcrc = crc32fast::hash(&out);
        out.extend_from_slice(&hcrc.to_le_bytes());
        Ok(out)
    }

    /// Decompresses a standalone `.lmz` file made with this model.
    /// `progress(done, total)` counts output bytes. Synchronous, like [`Codec::compress`].
    pub fn decompress<B: Backend>(&self, b: &mut B, file: &[u8], progress: &mut dyn Progress) -> Result<Vec<u8>> {
        block_on(self.decompress_async(b, file, progress))
    }

    /// [`Codec::decompress`] for any engine: awaits the engine's readbacks.
    pub async fn decompress_async<B: Backend>(&self, b: &mut B, file: &[u8], progress: &mut dyn Progress) -> Result<Vec<u8>> {
        // Never trust the header with an allocation: the output grows as the data decodes.
        let mut out = Vec::new();
        self.decompress_chunks_async(b, file, progress, &mut |part| {
            out.extend_from_slice(part);
            Ok(())
        }).await?;
        Ok(out)
    }

    /// The raw stream for an embedder that already knows the model and the original length
    /// (the notes extension): `tag, check16, payload` — 3 bytes over the coder's output.
    pub fn compress_raw<B: Backend>(&self, b: &mut B, data: &[u8], model: ModelUse, progress: &mut dyn Progress) -> Result<Vec<u8>> {
        block_on(self.compress_raw_async(b, data, model, progress))
    }

    /// [`Codec::compress_raw`] for any engine: awaits the engine's readbacks.
    pub async fn compress_raw_async<B: Backend>(&self, b: &mut B, data: &[u8], model: ModelUse, progress: &mut dyn Progress) -> Result<Vec<u8>> {
        let policy = self.default_policy();
        // One chunk: the raw stream has no chunk table.
        let opts = Options { chunk_tokens: usize::MAX, model, ..Options::default() };
        let chunk = self.encode_chunks(b, data, &opts, &policy, progress).await?.into_iter().next();
        let (method, payload) = chunk.map_or((Method::Stored, Vec::new()), |c| (c.method, c.payload));
        // The default policy has a tag (a test keeps it so).
        let tag = method.tag(policy.kv, policy.adapt, policy.ngram).ok_or_else(|| Error::InvalidArgument("internal: the default policy has no compact tag".into()))?;
        let mut out = vec![tag];
        out.extend_from_slice(&check16(&self.fingerprint, data).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes a raw stream of `len` original bytes made by [`Codec::compress_raw`].
    pub fn decompress_raw<B: Backend>(&self, b: &mut B, raw: &[u8], len: u64, progress: &mut dyn Progress) -> Result<Vec<u8>> {
        block_on(self.decompress_raw_async(b, raw, len, progress))
    }

    /// [`Codec::decompress_raw`] for any engine: awaits the engine's readbacks.
    pub async fn decompress_raw_async<B: Backend>(&self, b: &mut B, raw: &[u8], len: u64, progress: &mut dyn Progress) -> Result<Vec<u8>> {
        let (_, method, (kv, adapt, ngram), check, rest) = split_raw(raw)?;
        let policy = Policy::for_tag(&self.cfg, kv, adapt, ngram);
        if method == Method::Model {
            self.check_backend(b, &policy)?;
        }
        let out = if method == Method::Model {
            let job = Job { index: 0, payload: rest, len };
            self.decode_streams(b, &[job], &policy, &mut |d| progress.update(d, len)).await.map_err(|(e, _)| e)?.pop().map(|(_, v)| v).unwrap_or_default()
        } else {
            let mut out = Vec::new();
            self.decode_plain(method, rest, len, &mut out)?;
            progress.update(out.len() as u64, len)?;
            out
        };
        if out.len() as u64 != len {
            return Err(Error::FormatCorrupt(format!("the raw stream decodes to {} bytes, not {len}", out.len())));
        }
        let c = check16(&self.fingerprint, &out);
        if c != check {
            return Err(Error::FormatChecksum { expected: format!("{check:04x}"), actual: format!("{c:04x}") });
        }
        Ok(out)
    }

    // --- compression ---

    /// Tokenizes `data`, cuts it into chunks and encodes each with the smallest method.
    async fn encode_chunks<B: Backend>(&self, b: &mut B, data: &[u8], opts: &Options, policy: &Policy, progress: &mut dyn Progress) -> Result<Vec<Chunk>> {
        if opts.chunk_tokens == 0 {
            return Err(Error::InvalidArgument("chunks must hold at least one token".into()));
        }
        let total = data.len() as u64;
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let tokens = self.tok.encode(data);
        let pieces = self.cut(data, &tokens, opts.chunk_tokens)?;
        let mut chunks: Vec<Chunk> = Vec::with_capacity(pieces.len());
        // Consecutive pieces the model does not win are merged into one chunk of up to
        // MERGE_LIMIT bytes (fewer table entries, and zstd sees more), compressed once when
        // the run ends: the byte range of the run so far.
        let mut run: Option<(usize, usize)> = None;
        let flush = |run: &mut Option<(usize, usize)>, chunks: &mut Vec<Chunk>| {
            if let Some((s, e)) = run.take() {
                chunks.push(plain_chunk(&data[s..e]));
            }
        };
        let mut done = 0u64;
        for piece in &pieces {
            let n = piece.bytes.len() as u64;
            let start = piece.bytes.as_ptr() as usize - data.as_ptr() as usize;
            let use_model = match opts.model {
                ModelUse::Always | ModelUse::Force => true,
                ModelUse::Never => false,
                ModelUse::Auto => piece.bytes.len() as f64 >= AUTO_MIN_BYTES_PER_TOKEN * piece.tokens.len() as f64,
            };
            let mut model = None;
            if use_model {
                self.check_backend(b, policy)?;
                let ntok = piece.tokens.len() as u64;
                let coded = self.encode_tokens(b, piece.tokens, policy, &mut |d, _| progress.update(done + n * d as u64 / ntok.max(1), total)).await?;
                let bounded = piece.tokens.len() as u64 <= max_model_tokens(coded.len());
                if bounded && (coded.len() < piece.bytes.len() || opts.model == ModelUse::Force) {
                    model = Some(Chunk { method: Method::Model, payload: coded, original_len: piece.bytes.len() });
                }
            }
            match (model, run) {
                (Some(c), _) => {
                    flush(&mut run, &mut chunks);
                    chunks.push(c);
                }
                (None, Some((s, e))) if e - s + piece.bytes.len() <= MERGE_LIMIT => run = Some((s, e + piece.bytes.len())),
                (None, _) => {
                    flush(&mut run, &mut chunks);
                    run = Some((start, start + piece.bytes.len()));
                }
            }
            done += n;
            progress.update(done, total)?;
        }
        flush(&mut run, &mut chunks);
        Ok(chunks)
    }

    /// Cuts the token sequence into `max(1, floor(n / size))` runs of equal length (so every
    /// run has at least `size` tokens unless the text is shorter, and fewer than `2·size`),
    /// moving a cut one token on where it would split an escape pair, and pairs each run with
    /// its bytes, checking that the tokens spell exactly the input.
    fn cut<'a>(&self, data: &'a [u8], tokens: &'a [u32], size: usize) -> Result<Vec<Piece<'a>>> {
        let esc = self.tok.escape_token();
        let n = tokens.len();
        let k = (n / size).max(1);
        let mut out = Vec::with_capacity(k);
        let (mut t0, mut b0) = (0usize, 0usize);
        for i in 1..=k {
            // i·n < 2^64 for any slice length and i ≤ k ≤ n.
            let mut t1 = ((i as u128 * n as u128) / k as u128) as usize;
            if t1 <= t0 {
                continue;
            }
            if t1 < n && Some(tokens[t1 - 1]) == esc {
                t1 += 1;
            }
            let spelled = self.tok.decode(&tokens[t0..t1]);
            let b1 = b0 + spelled.len();
            if data.get(b0..b1) != Some(&spelled[..]) {
                return Err(Error::Tokenizer("internal check failed: the tokens do not spell the input".into()));
            }
            out.push(Piece { tokens: &tokens[t0..t1], bytes: &data[b0..b1] });
            (t0, b0) = (t1, b1);
        }
        if t0 != n || b0 != data.len() {
            return Err(Error::Tokenizer("internal check failed: the tokens do not cover the input".into()));
        }
        Ok(out)
    }

    /// Range-codes `tokens` under the model with `policy`, then checks the stream decodes back
    /// to the same symbols (the coder half of a round trip, without re-running the model).
    async fn encode_tokens<B: Backend>(&self, b: &mut B, tokens: &[u32], policy: &Policy, progress: &mut dyn FnMut(usize, usize) -> Result<()>) -> Result<Vec<u8>> {
        let mut enc = Encoder::new();
        let mut coded: Vec<(u32, u32)> = Vec::with_capacity(tokens.len());
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(Error::InvalidArgument(format!("token {t} outside the vocabulary")));
        }
        // Only each token's range comes back from the engine, not its whole table.
        score_ranges_async(b, &self.cfg, &self.fracs, tokens, policy, &mut |_, c, f| {
            enc.encode(c, f);
            coded.push((c, f));
            Ok(())
        }, progress).await?;
        let bytes = enc.finish();
        let mut d = Decoder::new(&bytes);
        for &(c, f) in &coded {
            let t = d.target()?;
            if t < c || t - c >= f {
                return Err(Error::InvalidArgument("internal check failed: the range coder does not round-trip".into()));
            }
            d.consume(c, f)?;
        }
        d.finish()?;
        Ok(bytes)
    }

    // --- decompression ---

    /// Decodes a stored or zstd chunk of `len` original bytes into `out`.
    fn decode_plain(&self, method: Method, payload: &[u8], len: u64, out: &mut Vec<u8>) -> Result<()> {
        match method {
            Method::Stored => {
                if payload.len() as u64 != len {
                    return Err(Error::FormatCorrupt(format!("a stored chunk of {} bytes claims {len}", payload.len())));
                }
                out.extend_from_slice(payload);
                Ok(())
            }
            Method::Zstd => zstd_decompress(payload, len, out),
            Method::Model => Err(Error::InvalidArgument("internal: a model chunk is decoded by decode_streams".into())),
        }
    }

    /// Decodes model chunks in lock-step: each runs in its own sequence slot of the engine,
    /// and every step is one batch holding one row per active chunk (or a window's context
    /// prefill), so the weights are read once for all of them. A finished chunk hands its
    /// slot to the next. Returns `(chunk index, bytes)` per job; `progress(bytes)` counts
    /// the bytes decoded so far over all jobs. An error names the job's chunk index.
    async fn decode_streams<B: Backend>(&self, b: &mut B, jobs: &[Job<'_>], policy: &Policy, progress: &mut dyn FnMut(u64) -> Result<()>) -> std::result::Result<Vec<(usize, Vec<u8>)>, (Error, usize)> {
        let slots = b.slots().max(1);
        let mut queue = jobs.iter();
        let mut active: Vec<(usize, Stream)> = Vec::new(); // (slot, stream)
        let mut free: Vec<usize> = (0..slots).rev().collect();
        let mut results: Vec<(usize, Vec<u8>)> = Vec::with_capacity(jobs.len());
        let (mut decoded, mut reported) = (0u64, 0u64);
        let mut batch = Batch::default();
        loop {
            // Fill the free slots; a zero-length chunk finishes at once.
            while let Some(slot) = free.last().copied() {
                let Some(job) = queue.next() else { break };
                let st = Stream::new(job, policy, self.cfg.vocab);
                if st.done {
                    results.push((job.index, st.finish().map_err(|e| (e, job.index))?));
                    continue;
                }
                free.pop();
                active.push((slot, st));
            }
            if active.is_empty() {
                break;
            }
            batch.clear();
            for (slot, st) in active.iter_mut() {
                if let Some((src, keep)) = st.push_step(*slot, policy, &mut batch) {
                    b.kv_shift(*slot, src, 1, keep).map_err(|e| (e, st.index))?;
                }
            }
            let (mut i, mut at) = (0usize, None);
            forward_async(b, &self.cfg, &self.fracs, &batch, &mut |_, table| {
                let (_, st) = &mut active[i];
                i += 1;
                at = Some(st.index);
                let before = st.out.len() as u64;
                st.take(table, &self.tok)?;
                decoded += st.out.len() as u64 - before;
                Ok(())
            })
            .await
            .map_err(|e| (e, at.unwrap_or(0)))?;
            if decoded - reported >= 256 {
                progress(decoded).map_err(|e| (e, at.unwrap_or(0)))?;
                reported = decoded;
            }
            let mut k = 0;
            while k < active.len() {
                if active[k].1.done {
                    let (slot, st) = active.swap_remove(k);
                    let index = st.index;
                    results.push((index, st.finish().map_err(|e| (e, index))?));
                    free.push(slot);
                } else {
                    k += 1;
                }
            }
        }
        progress(decoded).map_err(|e| (e, 0))?;
        Ok(results)
    }
}

/// A model chunk to decode.
struct Job<'a> {
    index: usize,
    payload: &'a [u8],
    len: u64,
}

/// The state of one model chunk being decoded: its range decoder, the tokens and bytes so
/// far, and where it stands in the context policy's windows.
struct Stream<'a> {
    index: usize,
    dec: Decoder<'a>,
    len: u64,
    max_tokens: u64,
    tokens: Vec<u32>,
    out: Vec<u8>,
    pending_escape: bool,
    /// The current window (its `end` nominal: a token count); `None` before the first.
    window: Option<Window>,
    /// The position the next single-token step runs at.
    pos: usize,
    done: bool,
    /// The online models of the policy ([`Policy::adapt`], [`Policy::ngram`]).
    online: Option<Online>,
}

impl<'a> Stream<'a> {
    fn new(job: &Job<'a>, policy: &Policy, vocab: usize) -> Stream<'a> {
        Stream {
            index: job.index,
            dec: Decoder::new(job.payload),
            len: job.len,
            // Every token but an escape spells ≥ 1 byte, and an escape pair spells one: a
            // valid chunk has at most 2·len tokens.
            // and at most `max_model_tokens` per payload (the bound on decoding work).
            max_tokens: job.len.saturating_mul(2).saturating_add(2).min(max_model_tokens(job.payload.len())),
            tokens: Vec::new(),
            out: Vec::new(),
            pending_escape: false,
            window: None,
            pos: 0,
            done: job.len == 0,
            online: if job.len > 0 { Online::new(vocab, policy.adapt, policy.ngram) } else { None },
        }
    }

    /// Adds this stream's next step to `batch`: a new window's context (start token and the
    /// tokens before the window's scored ones, from position 0) or, with
    /// [`KvMode::Shift`], the last decoded token after its context is shifted in the cache
    /// (returned as `(src, n)` for [`Backend::kv_shift`] to positions `1..`, which the caller
    /// runs before the batch); otherwise the last decoded token.
    fn push_step(&mut self, slot: usize, policy: &Policy, batch: &mut Batch) -> Option<(usize, usize)> {
        let n = self.tokens.len();
        if self.window.is_some_and(|w| n < w.end) {
            batch.push_seq(slot, &self.tokens[n - 1..], self.pos, 0);
            self.pos += 1;
            return None;
        }
        // With an unbounded length, `end` is the window's nominal end.
        let w = window_at(n, usize::MAX, policy);
        let prev = self.window.replace(w);
        match (policy.kv, prev) {
            (KvMode::Shift, Some(p)) => {
                let (src, keep) = w.shift_from(&p);
                batch.push_seq(slot, &self.tokens[n - 1..], 1 + keep, 0);
                self.pos = 2 + keep;
                Some((src, keep))
            }
            _ => {
                let mut input = Vec::with_capacity(w.score_start - w.ctx_start + 1);
                input.push(policy.start);
                input.extend_from_slice(&self.tokens[w.ctx_start..w.score_start]);
                let len = input.len();
                batch.push_seq(slot, &input, 0, len - 1);
                self.pos = len;
                None
            }
        }
    }

    /// Decodes one token with `table` and spells it exactly as `Tokenizer::decode` does.
    fn take(&mut self, table: &[u32], tok: &Tokenizer) -> Result<()> {
        let dec = &mut self.dec;
        let t = match &mut self.online {
            Some(on) => on.step(table, |r| dec.decode(r))?,
            None => dec.decode(table)?,
        };
        self.tokens.push(t);
        if self.tokens.len() as u64 > self.max_tokens {
            return Err(Error::FormatCorrupt(format!(
                "the chunk decodes to more than {} tokens without spelling its length (at most 2 per byte, and {MAX_TOKENS_PER_PAYLOAD_BYTE} per payload byte + {MODEL_TOKEN_SLACK})",
                self.max_tokens
            )));
        }
        match tok.escape_token() {
            Some(e) if self.pending_escape => {
                self.pending_escape = false;
                self.out.extend_from_slice(&tok.decode(&[e, t]));
            }
            Some(e) if t == e => self.pending_escape = true,
            _ => self.out.extend_from_slice(tok.token_bytes(t)),
        }
        let n = self.out.len() as u64;
        if n > self.len {
            return Err(Error::FormatCorrupt(format!("the tokens spell more than the chunk's {} bytes", self.len)));
        }
        self.done = n == self.len && !self.pending_escape;
        Ok(())
    }

    /// Checks the range decoder consumed its payload exactly and returns the bytes.
    fn finish(self) -> Result<Vec<u8>> {
        self.dec.finish()?;
        Ok(self.out)
    }
}

/// Prefixes a corruption error with its chunk when the file has several.
fn in_chunk(e: Error, i: usize, chunks: usize) -> Error {
    match e {
        Error::FormatCorrupt(m) if chunks > 1 => Error::FormatCorrupt(format!("chunk {i}: {m}")),
        e => e,
    }
}

/// One chunk on the way out.
struct Chunk {
    method: Method,
    payload: Vec<u8>,
    original_len: usize,
}

/// `bytes` as the smaller of zstd and stored.
fn plain_chunk(bytes: &[u8]) -> Chunk {
    match zstd_compress(bytes) {
        Some(z) if z.len() < bytes.len() => Chunk { method: Method::Zstd, payload: z, original_len: bytes.len() },
        _ => Chunk { method: Method::Stored, payload: bytes.to_vec(), original_len: bytes.len() },
    }
}

#[cfg(feature = "zstd")]
fn zstd_compress(data: &[u8]) -> Option<Vec<u8>> {
    zstd::bulk::compress(data, ZSTD_LEVEL).ok()
}

#[cfg(not(feature = "zstd"))]
fn zstd_compress(_: &[u8]) -> Option<Vec<u8>> {
    None
}

/// Decodes one zstd frame of exactly `len` bytes (pure Rust, every build), reading at most
/// `len + 1` bytes so a lying frame cannot make it allocate more.
fn zstd_decompress(payload: &[u8], len: u64, out: &mut Vec<u8>) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| Error::FormatCorrupt(format!("zstd chunk: {e}"));
    let mut src = payload;
    let dec = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(&mut src, ZSTD_MAX_WINDOW).map_err(|e| bad(&e))?;
    let start = out.len();
    dec.take(len.saturating_add(1)).read_to_end(out).map_err(|e| bad(&e))?;
    if (out.len() - start) as u64 != len {
        return Err(Error::FormatCorrupt(format!("zstd chunk decodes to {} bytes, the table says {len}", out.len() - start)));
    }
    if !src.is_empty() {
        return Err(Error::FormatCorrupt(format!("{} byte(s) after the zstd frame", src.len())));
    }
    Ok(())
}

// --- chunk by chunk (the browser package's decompressStream) ---

impl Codec {
    /// [`Codec::decompress`], handing the original to `sink` chunk by chunk.
    pub fn decompress_chunks<B: Backend>(&self, b: &mut B, file: &[u8], progress: &mut dyn Progress, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        block_on(self.decompress_chunks_async(b, file, progress, sink))
    }

    /// [`Codec::decompress_async`], but the original goes to `sink` one chunk at a time, in
    /// file order, as soon as that chunk's group is decoded, instead of coming back whole. An error from `sink` (e.g. `Error::Cancelled`)
    /// stops the work and is returned.
    ///
    /// What is checked when: the whole file is parsed and checked first, exactly as
    /// [`Codec::decompress_async`] does (header, chunk table, lengths, model fingerprint,
    /// policy) — nothing is decoded from a file that fails there. Each chunk passes its own
    /// checks (its length, the range decoder's end, the zstd frame) before `sink` sees it.
    /// The checksum of the whole original (full form) can only be computed after the last
    /// chunk, so a mismatch is returned (`LMZ_FORMAT_CHECKSUM`) after `sink` has seen every
    /// chunk: a caller that passes chunks on must treat that error as "what you got is
    /// wrong". A compact file is one chunk: it is checked before `sink` sees it.
    ///
    /// Model chunks are decoded in groups of as many as the engine has sequence slots, in
    /// lock-step (the weights are read once per step for all of them), so memory holds the
    /// file and one group's output.
    pub async fn decompress_chunks_async<B: Backend>(&self, b: &mut B, file: &[u8], progress: &mut dyn Progress, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let p = parse(file)?;
        let info = &p.info;
        let policy = self.file_policy(info)?;
        if info.chunks.iter().any(|c| c.method == Method::Model) {
            policy.validate(&self.cfg).map_err(|e| Error::FormatCorrupt(format!("the file's context policy does not fit the model: {e}")))?;
            self.check_backend(b, &policy)?;
        }
        let (total, n) = (info.original_len, info.chunks.len());
        let slots = b.slots().max(1);
        let mut crc = crc32fast::Hasher::new();
        let mut held = Vec::new(); // the compact form's one chunk, until its check passes
        let mut done = 0u64;
        let mut next = 0usize;
        while next < n {
            // A group: the chunks up to and including the `slots`-th model chunk from here,
            // decoded together (the model chunks in lock-step, one slot each), then handed
            // out in order. Memory holds one group's output.
            let (mut end, mut models) = (next, 0usize);
            while end < n && models < slots {
                models += (info.chunks[end].method == Method::Model) as usize;
                end += 1;
            }
            let mut parts: Vec<Vec<u8>> = vec![Vec::new(); end - next];
            let mut jobs = Vec::with_capacity(models);
            let mut plain = 0u64;
            for i in next..end {
                let (ch, payload) = (&info.chunks[i], p.payloads[i]);
                if ch.method == Method::Model {
                    jobs.push(Job { index: i, payload, len: ch.original_len });
                } else {
                    self.decode_plain(ch.method, payload, ch.original_len, &mut parts[i - next]).map_err(|e| in_chunk(e, i, n))?;
                    plain += ch.original_len;
                    progress.update(done + plain, total)?;
                }
            }
            let base = done + plain;
            for (i, part) in self.decode_streams(b, &jobs, &policy, &mut |d| progress.update(base + d, total)).await.map_err(|(e, i)| in_chunk(e, i, n))? {
                parts[i - next] = part;
            }
            for (i, part) in (next..end).zip(parts) {
                let ch = &info.chunks[i];
                if part.len() as u64 != ch.original_len {
                    return Err(Error::FormatCorrupt(format!("chunk {i} decodes to {} bytes, the table says {}", part.len(), ch.original_len)));
                }
                done += ch.original_len;
                match info.form {
                    Form::Full => {
                        crc.update(&part);
                        sink(&part)?;
                    }
                    Form::Compact => held = part,
                }
            }
            progress.update(done, total)?;
            next = end;
        }
        match info.form {
            Form::Full => {
                let crc = crc.finalize();
                if crc != info.checksum {
                    return Err(Error::FormatChecksum { expected: format!("{:08x}", info.checksum), actual: format!("{crc:08x}") });
                }
            }
            Form::Compact => {
                let c = check16(&self.fingerprint, &held) as u32;
                if c != info.checksum {
                    return Err(Error::FormatChecksum { expected: format!("{:04x}", info.checksum), actual: format!("{c:04x}") });
                }
                if !held.is_empty() {
                    sink(&held)?;
                }
            }
        }
        Ok(())
    }

    /// The context policy a file was made with (its header's for the full form, its tag's
    /// for the compact form), once its fingerprint matches this model's.
    fn file_policy(&self, info: &Info) -> Result<Policy> {
        let have = hex(&self.fingerprint);
        match info.form {
            Form::Full => {
                if info.fingerprint[..] != self.fingerprint[..] {
                    return Err(Error::FormatModelMismatch { wanted: format!("is {}", hex(&info.fingerprint)), have });
                }
                let (window, stride) = info.window_stride.unwrap_or((0, 0));
                Ok(Policy { window: window as usize, stride: stride as usize, start: self.cfg.doc_start, kv: info.kv, adapt: info.adapt, ngram: info.ngram })
            }
            Form::Compact => {
                if info.fingerprint[..] != self.fingerprint[..COMPACT_FP_BYTES] {
                    return Err(Error::FormatModelMismatch { wanted: format!("starts with {}", hex(&info.fingerprint)), have });
                }
                Ok(Policy::for_tag(&self.cfg, info.kv, info.adapt, info.ngram))
            }
        }
    }
}
