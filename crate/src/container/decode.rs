//! Decompression: the half of the codec that decodes files and raw streams, and the model
//! chunks decoded in lock-step.

use std::io::Read;

use crate::adapt::Online;
use crate::backend::Backend;
use crate::coder::Decoder;
use crate::error::{Error, Result};
use crate::eval::{window_at, KvMode, Policy, Window};
use crate::model::{block_on, forward_async, Batch};
use crate::tokenizer::Tokenizer;

use super::format::{max_model_tokens, Method, MAX_TOKENS_PER_PAYLOAD_BYTE, MODEL_TOKEN_SLACK, ZSTD_MAX_WINDOW};
use super::read::{check16, split_raw};
use super::{Codec, Progress};

impl Codec {
    /// Decompresses a standalone `.lmz` file made with this model.
    /// `progress(done, total)` counts output bytes. Synchronous, like [`Codec::compress`].
    pub fn decompress<B: Backend>(&self, b: &mut B, file: &[u8], progress: &mut dyn Progress) -> Result<Vec<u8>> {
        block_on(self.decompress_async(b, file, progress))
    }

    /// [`Codec::decompress`] for any engine: awaits the engine's readbacks.
    pub async fn decompress_async<B: Backend>(
        &self,
        b: &mut B,
        file: &[u8],
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        // Never trust the header with an allocation: the output grows as the data decodes.
        let mut out = Vec::new();
        self.decompress_chunks_async(b, file, progress, &mut |part| {
            out.extend_from_slice(part);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Decodes a raw stream of `len` original bytes made by [`Codec::compress_raw`].
    pub fn decompress_raw<B: Backend>(
        &self,
        b: &mut B,
        raw: &[u8],
        len: u64,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        block_on(self.decompress_raw_async(b, raw, len, progress))
    }

    /// [`Codec::decompress_raw`] for any engine: awaits the engine's readbacks.
    pub async fn decompress_raw_async<B: Backend>(
        &self,
        b: &mut B,
        raw: &[u8],
        len: u64,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>> {
        let (_, method, (kv, adapt, ngram), check, rest) = split_raw(raw)?;
        let policy = Policy::for_tag(&self.cfg, kv, adapt, ngram);
        if method == Method::Model {
            self.check_backend(b, &policy)?;
        }
        let out = if method == Method::Model {
            let job = Job {
                index: 0,
                payload: rest,
                len,
            };
            self.decode_streams(b, &[job], &policy, &mut |d| progress.update(d, len))
                .await
                .map_err(|(e, _)| e)?
                .pop()
                .map(|(_, v)| v)
                .unwrap_or_default()
        } else {
            let mut out = Vec::new();
            self.decode_plain(method, rest, len, &mut out)?;
            progress.update(out.len() as u64, len)?;
            out
        };
        if out.len() as u64 != len {
            return Err(Error::FormatCorrupt(format!(
                "the raw stream decodes to {} bytes, not {len}",
                out.len()
            )));
        }
        let c = check16(&self.fingerprint, &out);
        if c != check {
            return Err(Error::FormatChecksum {
                expected: format!("{check:04x}"),
                actual: format!("{c:04x}"),
            });
        }
        Ok(out)
    }

    // --- decompression ---

    /// Decodes a stored or zstd chunk of `len` original bytes into `out`.
    pub(super) fn decode_plain(&self, method: Method, payload: &[u8], len: u64, out: &mut Vec<u8>) -> Result<()> {
        match method {
            Method::Stored => {
                if payload.len() as u64 != len {
                    return Err(Error::FormatCorrupt(format!(
                        "a stored chunk of {} bytes claims {len}",
                        payload.len()
                    )));
                }
                out.extend_from_slice(payload);
                Ok(())
            }
            Method::Zstd => zstd_decompress(payload, len, out),
            Method::Model => Err(Error::InvalidArgument(
                "internal: a model chunk is decoded by decode_streams".into(),
            )),
        }
    }

    /// Decodes model chunks in lock-step: each runs in its own sequence slot of the engine,
    /// and every step is one batch holding one row per active chunk (or a window's context
    /// prefill), so the weights are read once for all of them. A finished chunk hands its
    /// slot to the next. Returns `(chunk index, bytes)` per job; `progress(bytes)` counts
    /// the bytes decoded so far over all jobs. An error names the job's chunk index.
    pub(super) async fn decode_streams<B: Backend>(
        &self,
        b: &mut B,
        jobs: &[Job<'_>],
        policy: &Policy,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> std::result::Result<Vec<(usize, Vec<u8>)>, (Error, usize)> {
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
pub(super) struct Job<'a> {
    pub(super) index: usize,
    pub(super) payload: &'a [u8],
    pub(super) len: u64,
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
            max_tokens: job
                .len
                .saturating_mul(2)
                .saturating_add(2)
                .min(max_model_tokens(job.payload.len())),
            tokens: Vec::new(),
            out: Vec::new(),
            pending_escape: false,
            window: None,
            pos: 0,
            done: job.len == 0,
            online: if job.len > 0 {
                Online::new(vocab, policy.adapt, policy.ngram)
            } else {
                None
            },
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
            return Err(Error::FormatCorrupt(format!(
                "the tokens spell more than the chunk's {} bytes",
                self.len
            )));
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

/// Decodes one zstd frame of exactly `len` bytes (pure Rust, every build), reading at most
/// `len + 1` bytes so a lying frame cannot make it allocate more.
fn zstd_decompress(payload: &[u8], len: u64, out: &mut Vec<u8>) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| Error::FormatCorrupt(format!("zstd chunk: {e}"));
    let mut src = payload;
    let dec =
        ruzstd::decoding::StreamingDecoder::new_with_max_window_size(&mut src, ZSTD_MAX_WINDOW).map_err(|e| bad(&e))?;
    let start = out.len();
    dec.take(len.saturating_add(1)).read_to_end(out).map_err(|e| bad(&e))?;
    if (out.len() - start) as u64 != len {
        return Err(Error::FormatCorrupt(format!(
            "zstd chunk decodes to {} bytes, the table says {len}",
            out.len() - start
        )));
    }
    if !src.is_empty() {
        return Err(Error::FormatCorrupt(format!(
            "{} byte(s) after the zstd frame",
            src.len()
        )));
    }
    Ok(())
}
