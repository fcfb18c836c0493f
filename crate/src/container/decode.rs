//! Decompression: the half of the codec that decodes files and raw streams, and the model
//! chunks decoded in lock-step.

use std::collections::VecDeque;
use std::io::Read;

use crate::adapt::Online;
use crate::backend::Backend;
use crate::coder::Decoder;
use crate::error::{Error, Result};
use crate::eval::{window_at, KvMode, Policy, Window};
use crate::model::{block_on, forward_to_async, Batch, Readout};
use crate::tokenizer::Tokenizer;

use super::arena::{round, Arena};
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
        let (_, method, t, check, rest) = split_raw(raw)?;
        let policy = self.tag_policy(t)?;
        if method == Method::Model {
            self.check_backend(b, &policy)?;
        }
        let out = if method == Method::Model {
            let job = Job::new(0, rest, len, policy);
            let mut out = Err(Error::Internal("a raw stream not decoded".into()));
            self.decode_streams(b, &[job], &mut |d| progress.update(d, len), &mut |_, r| {
                out = r;
                Ok(())
            })
            .await?;
            out?
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

    /// Decodes model-coded streams in lock-step: each runs in its own sequence slot of the
    /// engine, and every step is one batch holding one row per active stream (or a window's
    /// context prefill), so the weights are read once for all of them. Each stream's slot
    /// holds as many cache positions as it needs so far ([`Arena`]): a short note takes a
    /// few dozen, a long chunk a window, and the engine's cache bounds how many run at once.
    /// A finished stream hands its slot and rows to the next.
    ///
    /// `done(index, bytes or error)` gets each job's result as it finishes (in no fixed
    /// order); an error of one stream's data (`LMZ_FORMAT_*`) ends that stream only. An error
    /// returned by `done` or `progress` (bytes decoded so far over all jobs), or of the
    /// engine, stops all and is returned. The engine is back in its fixed layout after.
    pub(super) async fn decode_streams<B: Backend>(
        &self,
        b: &mut B,
        jobs: &[Job<'_>],
        progress: &mut dyn FnMut(u64) -> Result<()>,
        done: &mut dyn FnMut(usize, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let r = self.decode_streams_in(b, jobs, progress, done).await;
        b.kv_reset();
        r
    }

    async fn decode_streams_in<B: Backend>(
        &self,
        b: &mut B,
        jobs: &[Job<'_>],
        progress: &mut dyn FnMut(u64) -> Result<()>,
        done: &mut dyn FnMut(usize, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let mut arena = Arena::new(b);
        let cache_len = b.cache_len();
        let mut queue: VecDeque<&Job> = jobs.iter().collect();
        let mut active: Vec<Active> = Vec::new(); // in the order they were admitted
        let mut free: Vec<usize> = (0..b.kv_map().streams()).rev().collect();
        let (mut decoded, mut reported) = (0u64, 0u64);
        let mut batch = Batch::default();
        let mut ran: Vec<usize> = Vec::new();
        // No stream is admitted while another waits for rows to grow into (or was sent
        // back to the queue for them): the rows that free up go to it first.
        let mut admit = true;
        loop {
            while let (true, Some(&job), Some(&slot)) = (admit, queue.front(), free.last()) {
                let st = Stream::new(job, self.cfg.vocab, self.known(&job.policy));
                if st.done {
                    queue.pop_front();
                    done(job.index, st.finish())?;
                    continue;
                }
                let max = st.max_cap(cache_len);
                if !arena.alloc(b, slot, round(st.estimate(), max))? {
                    break;
                }
                queue.pop_front();
                free.pop();
                active.push(Active { slot, job, st });
            }
            if active.is_empty() {
                if queue.is_empty() {
                    break;
                }
                return Err(Error::Internal(format!(
                    "the engine's cache of {} positions holds no stream",
                    arena.free()
                )));
            }
            // Each stream's next step, where its region holds it (grown if need be).
            batch.clear();
            ran.clear();
            for (k, a) in active.iter_mut().enumerate() {
                let plan = a.st.plan();
                let need = plan.need(a.st.pos);
                let cap = arena.cap(a.slot);
                if need > cap {
                    let max = a.st.max_cap(cache_len);
                    if !arena.grow(b, a.slot, round(need.max(2 * cap), max))? {
                        continue;
                    }
                }
                if let Some((src, keep)) = a.st.push_step(plan, a.slot, &mut batch) {
                    b.kv_shift(a.slot, src, 1, keep)?;
                }
                ran.push(k);
            }
            admit = ran.len() == active.len();
            if ran.is_empty() {
                // Every stream waits for rows: the newest goes back to the queue, to start
                // again from its first token when rows are free (a stream alone always fits:
                // a window is at most the engine's cache_len ≤ its rows).
                let a = active
                    .pop()
                    .ok_or_else(|| Error::Internal("no stream to send back".into()))?;
                decoded -= a.st.out.len() as u64; // reported again when decoded again
                arena.release(a.slot);
                free.push(a.slot);
                queue.push_front(a.job);
                continue;
            }
            // Row i of the logits is stream `ran[i]`'s next token (ascending, as pushed).
            let mut rows: Vec<&mut Stream> = Vec::with_capacity(ran.len());
            let mut next = ran.iter().peekable();
            for (k, a) in active.iter_mut().enumerate() {
                if next.next_if_eq(&&k).is_some() {
                    rows.push(&mut a.st);
                }
            }
            let (tok, vocab) = (&self.tok, self.cfg.vocab);
            let mut step = |row0: usize, n: usize, tables: &[u32]| -> Result<()> {
                let streams = rows
                    .get_mut(row0..row0 + n)
                    .ok_or_else(|| Error::Internal(format!("logits rows {row0}+{n} of {}", ran.len())))?;
                decoded += take_all(streams, tables, vocab, tok)?;
                Ok(())
            };
            forward_to_async(b, &self.cfg, &self.fracs, &batch, Readout::Runs(&mut step)).await?;
            if decoded >= reported + 256 {
                progress(decoded)?;
                reported = decoded;
            }
            let mut k = 0;
            while k < active.len() {
                if active[k].st.done {
                    let a = active.remove(k);
                    arena.release(a.slot);
                    free.push(a.slot);
                    admit = true;
                    done(a.job.index, a.st.finish())?;
                } else {
                    k += 1;
                }
            }
        }
        progress(decoded)
    }
}

/// Decodes the next token of each of `streams` with its table (`tables`: `[n, vocab]`, row
/// `i` for stream `i`), each on its own thread where there are several: the streams are
/// independent (each its own decoder and online models), and this host work — the online
/// models' passes over the vocabulary, the coder's search — is a tenth of a lock-step step.
/// Returns the bytes spelled. A stream whose data is wrong is marked failed and done.
fn take_all(streams: &mut [&mut Stream<'_>], tables: &[u32], vocab: usize, tok: &Tokenizer) -> Result<u64> {
    if vocab == 0 || tables.len() != streams.len() * vocab {
        return Err(Error::Internal(format!(
            "{} table entries for {} streams of {vocab} symbols",
            tables.len(),
            streams.len()
        )));
    }
    let one = |(st, table): (&mut &mut Stream<'_>, &[u32])| -> u64 {
        let before = st.out.len() as u64;
        if let Err(e) = st.take(table, tok) {
            st.failed = Some(e);
            st.done = true;
        }
        st.out.len() as u64 - before
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        if streams.len() > 1 {
            return Ok(streams.par_iter_mut().zip(tables.par_chunks(vocab)).map(one).sum());
        }
    }
    Ok(streams.iter_mut().zip(tables.chunks(vocab)).map(one).sum())
}

/// A model-coded stream to decode: a chunk of a file, or a raw stream.
pub(super) struct Job<'a> {
    pub(super) index: usize,
    pub(super) payload: &'a [u8],
    pub(super) len: u64,
    pub(super) policy: Policy,
    /// Stop once this many bytes are spelled (`len`: decode it all). A stream stopped
    /// early returns its prefix unchecked.
    pub(super) limit: u64,
}

impl<'a> Job<'a> {
    pub(super) fn new(index: usize, payload: &'a [u8], len: u64, policy: Policy) -> Job<'a> {
        Job {
            index,
            payload,
            len,
            policy,
            limit: len,
        }
    }
}

/// A stream being decoded, in the engine's slot `slot`.
struct Active<'a, 'j> {
    slot: usize,
    job: &'j Job<'a>,
    st: Stream<'a>,
}

/// What a stream's next step runs.
#[derive(Clone, Copy)]
enum Plan {
    /// The last decoded token, at the next position of the current window.
    Next,
    /// A new window whose context is kept in the cache: positions `src..src + keep` moved
    /// to `1..`, then the last decoded token at `1 + keep`.
    Shift { w: Window, src: usize, keep: usize },
    /// A new window run from position 0: the start token and the window's context.
    Prefill { w: Window },
}

impl Plan {
    /// The positions the stream's slot must hold for this step, the next position being `pos`.
    fn need(self, pos: usize) -> usize {
        match self {
            Plan::Next => pos + 1,
            Plan::Shift { keep, .. } => 2 + keep,
            Plan::Prefill { w } => w.score_start - w.ctx_start + 1,
        }
    }
}

/// The state of one model-coded stream being decoded: its range decoder, the tokens and
/// bytes so far, and where it stands in the context policy's windows.
struct Stream<'a> {
    dec: Decoder<'a>,
    /// The tokens the stream's tokens follow, known without decoding ([`Policy::chat`]):
    /// run through the model and the online models first, spelling nothing.
    known: Vec<u32>,
    len: u64,
    limit: u64,
    max_tokens: u64,
    policy: Policy,
    tokens: Vec<u32>,
    out: Vec<u8>,
    pending_escape: bool,
    /// The current window (its `end` nominal: a token count); `None` before the first.
    window: Option<Window>,
    /// The position the next single-token step runs at.
    pos: usize,
    done: bool,
    /// Why the stream's data is wrong, once it is.
    failed: Option<Error>,
    /// The online models of the policy ([`Policy::adapt`], [`Policy::ngram`]).
    online: Option<Online>,
}

impl<'a> Stream<'a> {
    fn new(job: &Job<'a>, vocab: usize, known: &[u32]) -> Stream<'a> {
        let policy = job.policy;
        Stream {
            dec: Decoder::new(job.payload),
            known: known.to_vec(),
            len: job.len,
            limit: job.limit.min(job.len),
            // Every token but an escape spells ≥ 1 byte, and an escape pair spells one: a
            // valid chunk has at most 2·len tokens.
            // and at most `max_model_tokens` per payload (the bound on decoding work).
            max_tokens: job
                .len
                .saturating_mul(2)
                .saturating_add(2)
                .min(max_model_tokens(job.payload.len()))
                .saturating_add(known.len() as u64),
            policy,
            tokens: Vec::new(),
            out: Vec::new(),
            pending_escape: false,
            window: None,
            pos: 0,
            done: job.len == 0 || job.limit == 0,
            failed: None,
            online: if job.len > 0 {
                Online::new(vocab, policy.adapt, policy.ngram)
            } else {
                None
            },
        }
    }

    /// The most positions the stream can use: a window, its tokens and the start token, or
    /// the engine's `cache_len`, whichever is least.
    fn max_cap(&self, cache_len: usize) -> usize {
        let tokens = usize::try_from(self.max_tokens.saturating_add(1)).unwrap_or(usize::MAX);
        self.policy.window.min(cache_len).min(tokens).max(1)
    }

    /// The positions to start with: text is about 4 bytes a token, so a third of the length
    /// is seldom outgrown (and growing is a copy of the rows).
    fn estimate(&self) -> usize {
        usize::try_from(self.len / 3 + 16).unwrap_or(usize::MAX)
    }

    /// What the next step runs ([`Stream::push_step`] runs it).
    fn plan(&self) -> Plan {
        let n = self.tokens.len();
        if self.window.is_some_and(|w| n < w.end) {
            return Plan::Next;
        }
        // With an unbounded length, `end` is the window's nominal end.
        let w = window_at(n, usize::MAX, &self.policy);
        match (self.policy.kv, self.window) {
            (KvMode::Shift, Some(p)) => {
                let (src, keep) = w.shift_from(&p);
                Plan::Shift { w, src, keep }
            }
            _ => Plan::Prefill { w },
        }
    }

    /// Adds the step `plan` to `batch` in slot `slot`; for [`Plan::Shift`] returns the
    /// cache move `(src, n)` to positions `1..` ([`Backend::kv_shift`]), which the caller
    /// runs before the batch.
    fn push_step(&mut self, plan: Plan, slot: usize, batch: &mut Batch) -> Option<(usize, usize)> {
        let n = self.tokens.len();
        match plan {
            Plan::Next => {
                batch.push_seq(slot, &self.tokens[n - 1..], self.pos, 0);
                self.pos += 1;
                None
            }
            Plan::Shift { w, src, keep } => {
                self.window = Some(w);
                batch.push_seq(slot, &self.tokens[n - 1..], 1 + keep, 0);
                self.pos = 2 + keep;
                Some((src, keep))
            }
            Plan::Prefill { w } => {
                self.window = Some(w);
                let mut input = Vec::with_capacity(w.score_start - w.ctx_start + 1);
                input.push(self.policy.start);
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
        if let Some(&t) = self.known.get(self.tokens.len()) {
            // A known token: the online models learn it as the encoder's did; no bytes.
            if let Some(on) = &mut self.online {
                on.step(table, |_| Ok(t))?;
            }
            self.tokens.push(t);
            return Ok(());
        }
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
        self.done = n >= self.limit && !self.pending_escape;
        Ok(())
    }

    /// Checks the range decoder consumed its payload exactly and returns the bytes, or
    /// why the stream's data is wrong.
    fn finish(self) -> Result<Vec<u8>> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if (self.out.len() as u64) < self.len {
            return Ok(self.out); // a prefix ([`Job::limit`]): the coder is not at its end
        }
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
