//! Compression: its options, and the half of the codec that makes files and raw streams.

use std::io::Read;

use crate::backend::Backend;
use crate::coder::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::eval::{score_ranges_async, KvMode, Policy};
use crate::model::block_on;

#[cfg(doc)]
use super::format::MAX_TOKENS_PER_PAYLOAD_BYTE;
#[cfg(feature = "zstd")]
use super::format::ZSTD_LEVEL;
use super::format::{
    max_model_tokens, ChunkInfo, Method, TagPolicy, AUTO_MIN_BYTES_PER_TOKEN, COMPACT_FP_BYTES, DEFAULT_CHUNK_TOKENS,
    FIXED_HEADER, FLAG_ADAPT, FLAG_KV_SHIFT, FLAG_NGRAM, MAGIC, MERGE_LIMIT, VERSION,
};
use super::read::{check16, put_varint};
#[cfg(doc)]
use super::segments::segment_len;
use super::segments::{Offset, ReadSegments, Segments, SliceSegments, SEGMENT_BYTES};
use super::{Codec, Progress};

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
        Options {
            chunk_tokens: DEFAULT_CHUNK_TOKENS,
            policy: None,
            model: ModelUse::Auto,
            compact: true,
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// One chunk on the way in: its tokens and bytes.
struct Piece<'a> {
    tokens: &'a [u32],
    bytes: &'a [u8],
}

impl Codec {
    /// Compresses `data` into a standalone `.lmz` file (full or compact form).
    /// `progress(done, total)` counts input bytes. Synchronous: for engines whose readback
    /// never waits (the CPU, a native GPU); a browser's GPU needs [`Codec::compress_async`].
    pub fn compress<B: Backend>(
        &self,
        b: &mut B,
        data: &[u8],
        opts: &Options,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        block_on(self.compress_async(b, data, opts, progress))
    }

    /// [`Codec::compress`] for any engine: awaits the engine's readbacks.
    pub async fn compress_async<B: Backend>(
        &self,
        b: &mut B,
        data: &[u8],
        opts: &Options,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        let mut payloads = Vec::new();
        let mut src = SliceSegments {
            rest: data,
            max: opts.segment_bytes,
        };
        let head = self
            .compress_from(b, &mut src, data.len() as u64, opts, progress, &mut |p| {
                payloads.extend_from_slice(p);
                Ok(())
            })
            .await?;
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
    pub fn compress_stream<B: Backend>(
        &self,
        b: &mut B,
        input: &mut dyn Read,
        total: u64,
        opts: &Options,
        progress: &mut dyn Progress,
        payloads: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let mut src = ReadSegments {
            input,
            max: opts.segment_bytes,
            buf: Vec::new(),
            used: 0,
            eof: false,
        };
        block_on(self.compress_from(b, &mut src, total, opts, progress, payloads))
    }

    /// The one compressor behind [`Codec::compress_async`] and [`Codec::compress_stream`]:
    /// segment by segment, chunks encoded and their payloads passed on at once; the head is
    /// made last, when the length, checksum and chunk table are known.
    async fn compress_from<B: Backend>(
        &self,
        b: &mut B,
        src: &mut dyn Segments,
        total: u64,
        opts: &Options,
        progress: &mut dyn Progress,
        payloads: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let mut policy = opts.policy.unwrap_or_else(|| self.default_policy());
        // A text of one segment and one chunk, in the compact form, is framed as a note.
        let may_frame = opts.policy.is_none() && opts.compact;
        let (mut crc, mut check) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
        check.update(&self.fingerprint);
        let mut table: Vec<ChunkInfo> = Vec::new();
        let mut len = 0u64;
        while let Some((seg, last)) = src.next_segment()? {
            crc.update(seg);
            check.update(seg);
            let mut seg_progress = Offset {
                inner: &mut *progress,
                base: len,
                total,
            };
            let frame = may_frame && len == 0 && last;
            let (chunks, used) = self
                .encode_chunks(b, seg, opts, &policy, frame, &mut seg_progress)
                .await?;
            policy = used;
            for c in chunks {
                payloads(&c.payload)?;
                table.push(ChunkInfo {
                    method: c.method,
                    original_len: c.original_len as u64,
                    stored_len: c.payload.len() as u64,
                });
            }
            len += seg.len() as u64;
        }
        self.file_head(&policy, opts, &table, len, crc.finalize(), check.finalize())
    }

    /// The bytes before the payloads of a file of `len` bytes whose chunks are `table`: the
    /// compact form when `opts` allows it and the policy has a tag (one chunk at most), else
    /// the full header and chunk table. `crc` is the original's crc32, `check` the crc32 of
    /// the fingerprint and the original (the compact form keeps its low 16 bits).
    pub(super) fn file_head(
        &self,
        policy: &Policy,
        opts: &Options,
        table: &[ChunkInfo],
        len: u64,
        crc: u32,
        check: u32,
    ) -> Result<Vec<u8>> {
        // A nonempty segment makes at least one chunk: one chunk means one segment.
        if opts.compact && self.has_tag(policy) && table.len() <= 1 {
            let method = table.first().map_or(Method::Stored, |c| c.method);
            // has_tag: every method has a tag under this policy.
            let tag = method
                .tag(TagPolicy::of(policy))
                .ok_or_else(|| Error::InvalidArgument("internal: a policy without a compact tag".into()))?;
            let mut out = vec![tag];
            out.extend_from_slice(&self.fingerprint[..COMPACT_FP_BYTES]);
            put_varint(&mut out, len);
            out.extend_from_slice(&(check as u16).to_le_bytes());
            return Ok(out);
        }
        let mut out = Vec::with_capacity(FIXED_HEADER + 24 * table.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(
            if policy.kv == KvMode::Shift { FLAG_KV_SHIFT } else { 0 }
                | if policy.adapt { FLAG_ADAPT } else { 0 }
                | if policy.ngram { FLAG_NGRAM } else { 0 },
        );
        out.extend_from_slice(&self.fingerprint);
        // validate() bounds the window by the model's context, far below 2^32.
        out.extend_from_slice(&(policy.window as u32).to_le_bytes());
        out.extend_from_slice(&(policy.stride as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        let count = u32::try_from(table.len())
            .map_err(|_| Error::InvalidArgument("more than 2^32 chunks: use larger chunks".into()))?;
        out.extend_from_slice(&count.to_le_bytes());
        for c in table {
            out.push(c.method as u8);
            put_varint(&mut out, c.original_len);
            put_varint(&mut out, c.stored_len);
        }
        let hcrc = crc32fast::hash(&out);
        out.extend_from_slice(&hcrc.to_le_bytes());
        Ok(out)
    }

    /// The raw stream for an embedder that already knows the model and the original length
    /// (the notes extension): `tag, check16, payload` — 3 bytes over the coder's output.
    pub fn compress_raw<B: Backend>(
        &self,
        b: &mut B,
        data: &[u8],
        model: ModelUse,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        block_on(self.compress_raw_async(b, data, model, progress))
    }

    /// [`Codec::compress_raw`] for any engine: awaits the engine's readbacks.
    pub async fn compress_raw_async<B: Backend>(
        &self,
        b: &mut B,
        data: &[u8],
        model: ModelUse,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        let policy = self.default_policy();
        // One chunk: the raw stream has no chunk table.
        let opts = Options {
            chunk_tokens: usize::MAX,
            model,
            ..Options::default()
        };
        let (chunks, policy) = self.encode_chunks(b, data, &opts, &policy, true, progress).await?;
        self.raw_frame(&policy, chunks.into_iter().next(), data)
    }

    /// The raw stream of `data` under `policy` (which has a tag) from its one chunk (none:
    /// the empty input).
    pub(super) fn raw_frame(&self, policy: &Policy, chunk: Option<Chunk>, data: &[u8]) -> Result<Vec<u8>> {
        let (method, payload) = chunk.map_or((Method::Stored, Vec::new()), |c| (c.method, c.payload));
        // The default policy has a tag (a test keeps it so).
        let tag = method
            .tag(TagPolicy::of(policy))
            .ok_or_else(|| Error::InvalidArgument("internal: the default policy has no compact tag".into()))?;
        let mut out = vec![tag];
        out.extend_from_slice(&check16(&self.fingerprint, data).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    // --- compression ---

    /// Tokenizes `data`, cuts it into chunks and encodes each with the smallest method under
    /// `policy` — or, when `frame` and it makes one chunk, under the note frame
    /// ([`Codec::chat_policy`], if the model has it). Returns the chunks and the policy used.
    async fn encode_chunks<B: Backend>(
        &self,
        b: &mut B,
        data: &[u8],
        opts: &Options,
        policy: &Policy,
        frame: bool,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<Chunk>, Policy)> {
        if opts.chunk_tokens == 0 {
            return Err(Error::InvalidArgument("chunks must hold at least one token".into()));
        }
        let total = data.len() as u64;
        if data.is_empty() {
            return Ok((Vec::new(), *policy));
        }
        let tokens = self.tok.encode(data);
        let pieces = self.cut(data, &tokens, opts.chunk_tokens)?;
        let policy = &match self.chat_policy() {
            Some(p) if frame && pieces.len() == 1 => p,
            _ => *policy,
        };
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
            let mut model = None;
            if uses_model(opts.model, piece.bytes, piece.tokens) {
                self.check_backend(b, policy)?;
                let ntok = piece.tokens.len() as u64;
                let coded = self
                    .encode_tokens(b, piece.tokens, policy, &mut |d, _| {
                        progress.update(done + n * d as u64 / ntok.max(1), total)
                    })
                    .await?;
                model = model_chunk(opts.model, piece.bytes, piece.tokens.len(), coded);
            }
            match (model, run) {
                (Some(c), _) => {
                    flush(&mut run, &mut chunks);
                    chunks.push(c);
                }
                (None, Some((s, e))) if e - s + piece.bytes.len() <= MERGE_LIMIT => {
                    run = Some((s, e + piece.bytes.len()))
                }
                (None, _) => {
                    flush(&mut run, &mut chunks);
                    run = Some((start, start + piece.bytes.len()));
                }
            }
            done += n;
            progress.update(done, total)?;
        }
        flush(&mut run, &mut chunks);
        Ok((chunks, *policy))
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
                return Err(Error::Tokenizer(
                    "internal check failed: the tokens do not spell the input".into(),
                ));
            }
            out.push(Piece {
                tokens: &tokens[t0..t1],
                bytes: &data[b0..b1],
            });
            (t0, b0) = (t1, b1);
        }
        if t0 != n || b0 != data.len() {
            return Err(Error::Tokenizer(
                "internal check failed: the tokens do not cover the input".into(),
            ));
        }
        Ok(out)
    }

    /// Range-codes `tokens` under the model with `policy`, then checks the stream decodes back
    /// to the same symbols (the coder half of a round trip, without re-running the model).
    async fn encode_tokens<B: Backend>(
        &self,
        b: &mut B,
        tokens: &[u32],
        policy: &Policy,
        progress: &mut dyn FnMut(usize, usize) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let mut enc = Encoder::new();
        let mut coded: Vec<(u32, u32)> = Vec::with_capacity(tokens.len());
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(Error::InvalidArgument(format!("token {t} outside the vocabulary")));
        }
        // The known tokens ([`Policy::chat`]) go first, through the model and the online
        // models, and are coded as nothing.
        let known = self.known(policy).len();
        let all = [self.known(policy), tokens].concat();
        // Only each token's range comes back from the engine, not its whole table.
        score_ranges_async(
            b,
            &self.cfg,
            &self.fracs,
            &all,
            policy,
            &mut |i, c, f| {
                if i >= known {
                    enc.encode(c, f);
                    coded.push((c, f));
                }
                Ok(())
            },
            &mut |d, n| progress(d.saturating_sub(known), n - known),
        )
        .await?;
        finish_coded(enc, &coded)
    }
}

/// The coder's output, checked to decode back to the same ranges `coded` (the coder half of
/// a round trip, without re-running the model).
pub(super) fn finish_coded(enc: Encoder, coded: &[(u32, u32)]) -> Result<Vec<u8>> {
    let bytes = enc.finish();
    let mut d = Decoder::new(&bytes);
    for &(c, f) in coded {
        let t = d.target()?;
        if t < c || t - c >= f {
            return Err(Error::InvalidArgument(
                "internal check failed: the range coder does not round-trip".into(),
            ));
        }
        d.consume(c, f)?;
    }
    d.finish()?;
    Ok(bytes)
}

/// Whether the model runs on a chunk of `bytes` spelled by `tokens` ([`ModelUse`]).
pub(super) fn uses_model(model: ModelUse, bytes: &[u8], tokens: &[u32]) -> bool {
    match model {
        ModelUse::Always | ModelUse::Force => true,
        ModelUse::Never => false,
        ModelUse::Auto => bytes.len() as f64 >= AUTO_MIN_BYTES_PER_TOKEN * tokens.len() as f64,
    }
}

/// The model chunk of `bytes` (`ntokens` tokens) coded as `coded`, if it is kept: within the
/// decoding-work bound, and smaller than the bytes (or [`ModelUse::Force`]).
pub(super) fn model_chunk(model: ModelUse, bytes: &[u8], ntokens: usize, coded: Vec<u8>) -> Option<Chunk> {
    let bounded = ntokens as u64 <= max_model_tokens(coded.len());
    (bounded && (coded.len() < bytes.len() || model == ModelUse::Force)).then_some(Chunk {
        method: Method::Model,
        payload: coded,
        original_len: bytes.len(),
    })
}

/// One chunk on the way out.
pub(super) struct Chunk {
    pub(super) method: Method,
    pub(super) payload: Vec<u8>,
    pub(super) original_len: usize,
}

/// `bytes` as the smaller of zstd and stored.
pub(super) fn plain_chunk(bytes: &[u8]) -> Chunk {
    match zstd_compress(bytes) {
        Some(z) if z.len() < bytes.len() => Chunk {
            method: Method::Zstd,
            payload: z,
            original_len: bytes.len(),
        },
        _ => Chunk {
            method: Method::Stored,
            payload: bytes.to_vec(),
            original_len: bytes.len(),
        },
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
