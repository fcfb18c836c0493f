//! Many independent inputs in one call: small files, notes, records — decoded in lock-step
//! (one forward pass per step for all of them, each in a KV region as long as it needs),
//! encoded with their windows in shared batches. Every item's bytes are exactly what the
//! one-item call makes or returns; one corrupt item is reported with its error and does not
//! stop the others.

use crate::adapt::Online;
use crate::backend::Backend;
use crate::coder::{cum_freq, Encoder};
use crate::error::{Error, Result};
use crate::eval::Policy;
use crate::model::{block_on, forward_to_async, Batch, Readout};

use super::decode::Job;
use super::encode::{finish_coded, model_chunk, plain_chunk, uses_model, ModelUse, Options};
use super::format::ChunkInfo;
use super::format::{Form, Info, Method};
use super::read::{check16, parse, split_raw};
use super::segments::Offset;
use super::{Codec, Progress};

/// What a many-item call hands back for item `index`, as soon as it is known: its bytes or
/// why it failed. An error returned by the sink stops the call.
pub type ItemSink<'a> = dyn FnMut(usize, Result<Vec<u8>>) -> Result<()> + 'a;

/// What a many-item compression makes of each input.
#[derive(Clone, Copy)]
enum Framing<'a> {
    /// A standalone file ([`Codec::compress`]).
    File(&'a Options),
    /// A raw stream ([`Codec::compress_raw`]).
    Raw(ModelUse),
}

impl Framing<'_> {
    /// The policy of a one-chunk input (the note frame where the one-item call would use
    /// it: [`Codec::chat_policy`]), the model use, chunk size and segment size.
    fn settings(self, c: &Codec) -> (Policy, ModelUse, usize, usize) {
        let framed = || c.chat_policy().unwrap_or_else(|| c.default_policy());
        match self {
            Framing::File(o) => (
                match o.policy {
                    Some(p) => p,
                    None if o.compact => framed(),
                    None => c.default_policy(),
                },
                o.model,
                o.chunk_tokens,
                o.segment_bytes,
            ),
            Framing::Raw(m) => (framed(), m, usize::MAX, usize::MAX),
        }
    }
}

/// Most rows of one batch of [`Codec::compress_many`]'s one-window inputs (an input longer
/// than this still goes whole). Measured on 64 notes of ~63 tokens on the 2-core CPU engine
/// (`lmz bench --many`, loaded machine): batches of 64 rows coded them 1.6× faster than one
/// by one, of 256 rows 1.2×, of 4,096 rows 0.44× (the activations of a huge batch are
/// hundreds of MB of fresh pages, and stream through the caches once per weight group).
const BATCH_ROWS: usize = 64;

/// An input coded in a shared batch: its tokens after the policy's known ones
/// ([`Policy::chat`]), which come first in `tokens`.
struct Together {
    index: usize,
    tokens: Vec<u32>,
    known: usize,
}

/// One input's coder in a shared batch.
struct Coding {
    enc: Encoder,
    coded: Vec<(u32, u32)>,
    online: Option<Online>,
}

/// How an item decoded in lock-step is checked once its stream is done.
#[derive(Clone, Copy)]
enum Check {
    /// A full-form file: crc32 of the original.
    Crc32(u32),
    /// A compact file or a raw stream: [`check16`].
    Check16(u16),
    /// A raw stream's prefix ([`Codec::decompress_raw_many`] with `prefix`): unchecked.
    Prefix,
}

impl Codec {
    /// Decompresses many standalone `.lmz` files (any form, any size) in one call; result
    /// `i` is file `i`'s original or its error. Files of one model chunk — compact files,
    /// every short text — are decoded in lock-step; files of several chunks one after the
    /// other, each in lock-step over its own chunks. `progress(done, total)` counts output
    /// bytes over all files as their headers state them. Synchronous, like
    /// [`Codec::decompress`].
    pub fn decompress_many<B: Backend>(
        &self,
        b: &mut B,
        files: &[&[u8]],
        progress: &mut dyn Progress,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let mut out = places(files.len());
        block_on(self.decompress_many_async(b, files, progress, &mut |i, r| {
            out[i] = Some(r);
            Ok(())
        }))?;
        Ok(gather(out))
    }

    /// [`Codec::decompress_many`] for any engine, handing each file's result to `sink` as
    /// soon as it is known (files that fail their header first, then in the order they
    /// finish).
    pub async fn decompress_many_async<B: Backend>(
        &self,
        b: &mut B,
        files: &[&[u8]],
        progress: &mut dyn Progress,
        sink: &mut ItemSink<'_>,
    ) -> Result<()> {
        let mut jobs = Vec::new();
        let mut checks = Vec::new();
        let mut whole = Vec::new();
        let mut total = 0u64;
        for (i, &file) in files.iter().enumerate() {
            let p = match parse(file) {
                Ok(p) => p,
                Err(e) => {
                    sink(i, Err(e))?;
                    continue;
                }
            };
            total = total.saturating_add(p.info.original_len);
            let one_model = p.info.chunks.len() == 1 && p.info.chunks[0].method == Method::Model;
            if !one_model {
                whole.push(i);
                continue;
            }
            match self.model_policy(&p.info, b) {
                Ok(policy) => {
                    let c = &p.info.chunks[0];
                    jobs.push(Job::new(i, p.payloads[0], c.original_len, policy));
                    checks.push(match p.info.form {
                        Form::Full => Check::Crc32(p.info.checksum),
                        Form::Compact => Check::Check16(p.info.checksum as u16),
                    });
                }
                Err(e) => sink(i, Err(e))?,
            }
        }
        let by_index = job_of(files.len(), &jobs);
        let mut done = 0u64;
        self.decode_streams(b, &jobs, &mut |d| progress.update(d, total), &mut |i, r| {
            let k = by_index(i).ok_or_else(|| Error::Internal(format!("no job {i}")))?;
            sink(i, r.and_then(|out| self.verify(checks[k], jobs[k].len, out)))
        })
        .await?;
        // The lengths the headers state, not bytes decoded: saturating, like `total` (two
        // compact files may each claim 2^64 − 1 bytes).
        done = jobs.iter().fold(done, |d, j| d.saturating_add(j.len));
        for i in whole {
            let mut p = Offset {
                inner: &mut *progress,
                base: done,
                total,
            };
            let r = self.decompress_async(b, files[i], &mut p).await;
            done = done.saturating_add(r.as_ref().map_or(0, |v| v.len() as u64));
            match r {
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                r => sink(i, r)?,
            }
        }
        Ok(())
    }

    /// Decodes many raw streams (`(stream, original length)`, made by
    /// [`Codec::compress_raw`]) in one call, in lock-step; result `i` is stream `i`'s
    /// original or its error.
    ///
    /// With `prefix: Some(n)`, each model-coded stream stops once it has spelled at least
    /// `n` bytes (an arithmetic decoder can stop at any token): its result is then a prefix
    /// of the original, shorter than the stated length and not checked (its check covers
    /// the whole) — what a list of titles needs, at a fraction of the work. Streams whose
    /// result has the stated length were checked as usual.
    pub fn decompress_raw_many<B: Backend>(
        &self,
        b: &mut B,
        items: &[(&[u8], u64)],
        prefix: Option<u64>,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let mut out = places(items.len());
        block_on(self.decompress_raw_many_async(b, items, prefix, progress, &mut |i, r| {
            out[i] = Some(r);
            Ok(())
        }))?;
        Ok(gather(out))
    }

    /// [`Codec::decompress_raw_many`] for any engine, handing each stream's result to
    /// `sink` as soon as it is known.
    pub async fn decompress_raw_many_async<B: Backend>(
        &self,
        b: &mut B,
        items: &[(&[u8], u64)],
        prefix: Option<u64>,
        progress: &mut dyn Progress,
        sink: &mut ItemSink<'_>,
    ) -> Result<()> {
        let mut jobs = Vec::new();
        let mut checks = Vec::new();
        let total = items
            .iter()
            .fold(0u64, |t, &(_, n)| t.saturating_add(prefix.map_or(n, |p| p.min(n))));
        let mut plain = 0u64;
        for (i, &(raw, len)) in items.iter().enumerate() {
            let (_, method, t, check, payload) = match split_raw(raw) {
                Ok(s) => s,
                Err(e) => {
                    sink(i, Err(e))?;
                    continue;
                }
            };
            if method != Method::Model {
                let mut out = Vec::new();
                let r = self
                    .decode_plain(method, payload, len, &mut out)
                    .and_then(|()| self.verify(Check::Check16(check), len, out));
                plain = plain.saturating_add(len); // a caller's length: any u64
                sink(i, r)?;
                continue;
            }
            let policy = match self.tag_policy(t) {
                Ok(p) => p,
                Err(e) => {
                    sink(i, Err(e))?;
                    continue;
                }
            };
            if let Err(e) = self.check_backend(b, &policy) {
                sink(i, Err(e))?;
                continue;
            }
            let mut job = Job::new(i, payload, len, policy);
            match prefix {
                Some(p) if p < len => {
                    job.limit = p;
                    checks.push(Check::Prefix);
                }
                _ => checks.push(Check::Check16(check)),
            }
            jobs.push(job);
        }
        let by_index = job_of(items.len(), &jobs);
        let mut report = |d: u64| progress.update(plain.saturating_add(d), total);
        self.decode_streams(b, &jobs, &mut report, &mut |i, r| {
            let k = by_index(i).ok_or_else(|| Error::Internal(format!("no job {i}")))?;
            sink(i, r.and_then(|out| self.verify(checks[k], jobs[k].len, out)))
        })
        .await
    }

    /// Compresses many inputs in one call; result `i` is exactly what [`Codec::compress`]
    /// makes of input `i` with `opts`, or its error. `progress(done, total)` counts input
    /// bytes over all inputs. Synchronous, like [`Codec::compress`].
    pub fn compress_many<B: Backend>(
        &self,
        b: &mut B,
        items: &[&[u8]],
        opts: &Options,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let mut out = places(items.len());
        block_on(self.compress_many_async(b, items, opts, progress, &mut |i, r| {
            out[i] = Some(r);
            Ok(())
        }))?;
        Ok(gather(out))
    }

    /// [`Codec::compress_many`] for any engine, handing each result to `sink` as soon as
    /// it is made.
    pub async fn compress_many_async<B: Backend>(
        &self,
        b: &mut B,
        items: &[&[u8]],
        opts: &Options,
        progress: &mut dyn Progress,
        sink: &mut ItemSink<'_>,
    ) -> Result<()> {
        self.encode_many(b, items, Framing::File(opts), progress, sink).await
    }

    /// Compresses many inputs into raw streams in one call; result `i` is exactly what
    /// [`Codec::compress_raw`] makes of input `i`, or its error.
    pub fn compress_raw_many<B: Backend>(
        &self,
        b: &mut B,
        items: &[&[u8]],
        model: ModelUse,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let mut out = places(items.len());
        block_on(self.compress_raw_many_async(b, items, model, progress, &mut |i, r| {
            out[i] = Some(r);
            Ok(())
        }))?;
        Ok(gather(out))
    }

    /// [`Codec::compress_raw_many`] for any engine, handing each result to `sink` as soon
    /// as it is made.
    pub async fn compress_raw_many_async<B: Backend>(
        &self,
        b: &mut B,
        items: &[&[u8]],
        model: ModelUse,
        progress: &mut dyn Progress,
        sink: &mut ItemSink<'_>,
    ) -> Result<()> {
        self.encode_many(b, items, Framing::Raw(model), progress, sink).await
    }

    /// The one encoder behind the many-item compressions. Inputs that the model codes in
    /// one window and one chunk (every note-sized text) are run together: their windows'
    /// tokens in shared batches, each in its own slot holding just its tokens. The others go
    /// one by one through [`Codec::compress_async`] / [`Codec::compress_raw_async`]. Either
    /// way each input gets the bytes the one-item call makes.
    async fn encode_many<B: Backend>(
        &self,
        b: &mut B,
        items: &[&[u8]],
        framing: Framing<'_>,
        progress: &mut dyn Progress,
        sink: &mut ItemSink<'_>,
    ) -> Result<()> {
        let total = items.iter().fold(0u64, |t, i| t.saturating_add(i.len() as u64));
        let (together, alone) = self.sort_for_batches(b, items, framing);
        let mut done = 0u64;
        let limit = b.kv_map().rows().min(BATCH_ROWS);
        let mut k = 0;
        while k < together.len() {
            // A group: as many as fit the batch's rows and the engine's slots.
            let (mut end, mut rows) = (k, 0usize);
            while end < together.len()
                && end - k < b.kv_map().streams()
                && (end == k || rows + together[end].tokens.len() <= limit)
            {
                rows += together[end].tokens.len();
                end += 1;
            }
            let group = &together[k..end];
            let r = self.encode_group(b, items, group, framing).await;
            b.kv_reset();
            for (p, out) in group.iter().zip(r?) {
                done += items[p.index].len() as u64;
                sink(p.index, out)?;
            }
            progress.update(done, total)?;
            k = end;
        }
        for i in alone {
            let data = items[i];
            let mut p = Offset {
                inner: &mut *progress,
                base: done,
                total,
            };
            let r = match framing {
                Framing::File(opts) => self.compress_async(b, data, opts, &mut p).await,
                Framing::Raw(model) => self.compress_raw_async(b, data, model, &mut p).await,
            };
            done += data.len() as u64;
            match r {
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                r => sink(i, r)?,
            }
        }
        Ok(())
    }

    /// The inputs whose model-coded chunk is one window (coded together, with their
    /// tokens), and the others' indices.
    fn sort_for_batches<B: Backend>(
        &self,
        b: &B,
        items: &[&[u8]],
        framing: Framing<'_>,
    ) -> (Vec<Together>, Vec<usize>) {
        let (policy, model, chunk_tokens, segment_bytes) = framing.settings(self);
        let engine_ok = self.check_backend(b, &policy).is_ok();
        let (mut together, mut alone) = (Vec::new(), Vec::new());
        for (i, &data) in items.iter().enumerate() {
            if !engine_ok || data.is_empty() || data.len() > segment_bytes || chunk_tokens == 0 {
                alone.push(i);
                continue;
            }
            let tokens = self.tok.encode(data);
            let known = self.known(&policy);
            let one = known.len() + tokens.len() <= policy.window
                && tokens.len() / chunk_tokens <= 1
                && uses_model(model, data, &tokens)
                && tokens.iter().all(|&t| (t as usize) < self.cfg.vocab)
                && self.tok.decode(&tokens) == data;
            if one {
                together.push(Together {
                    index: i,
                    tokens: [known, &tokens].concat(),
                    known: known.len(),
                });
            } else {
                alone.push(i);
            }
        }
        (together, alone)
    }

    /// One batch of one-window inputs: each in slot `k` of the group at its own rows, every
    /// token's table (or range) coded for its input, then each framed as the one-item call
    /// frames it.
    async fn encode_group<B: Backend>(
        &self,
        b: &mut B,
        items: &[&[u8]],
        group: &[Together],
        framing: Framing<'_>,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let (policy, model, ..) = framing.settings(self);
        let mut batch = Batch::default();
        let mut base = 0;
        let mut symbols = Vec::new();
        for (slot, t) in group.iter().enumerate() {
            let n = t.tokens.len();
            b.kv_place(slot, base, n, 0)?;
            base += n;
            // The first window: the start token and every token but the last, all scored.
            let mut input = Vec::with_capacity(n);
            input.push(policy.start);
            input.extend_from_slice(&t.tokens[..n - 1]);
            batch.push_seq(slot, &input, 0, 0);
            symbols.extend_from_slice(&t.tokens);
        }
        let mut coders: Vec<Coding> = group
            .iter()
            .map(|_| Coding {
                enc: Encoder::new(),
                coded: Vec::new(),
                online: Online::new(self.cfg.vocab, policy.adapt, policy.ngram),
            })
            .collect();
        // Logits row r predicts symbols[r]: item `k` while r < ends[k]; its first `known`
        // rows predict known tokens, coded as nothing.
        let coded_from: Vec<usize> = group
            .iter()
            .scan(0, |e, t| {
                let from = *e + t.known;
                *e += t.tokens.len();
                Some(from)
            })
            .collect();
        let ends: Vec<usize> = group
            .iter()
            .scan(0, |e, t| {
                *e += t.tokens.len();
                Some(*e)
            })
            .collect();
        let mut k = 0;
        let mut item_of = |r: usize| {
            while r >= ends[k] {
                k += 1;
            }
            k
        };
        if policy.adapt || policy.ngram {
            let mut sink = |r: usize, f: &[u32]| -> Result<()> {
                let k = item_of(r);
                let c = &mut coders[k];
                let t = symbols[r];
                let on = c
                    .online
                    .as_mut()
                    .ok_or_else(|| Error::Internal("no online models".into()))?;
                let (enc, coded) = (&mut c.enc, &mut c.coded);
                let code = r >= coded_from[k];
                on.step(f, |q| {
                    if code {
                        let (cum, freq) = cum_freq(q, t)
                            .ok_or_else(|| Error::InvalidArgument(format!("token {t} outside the vocabulary")))?;
                        enc.encode(cum, freq);
                        coded.push((cum, freq));
                    }
                    Ok(t)
                })?;
                Ok(())
            };
            forward_to_async(b, &self.cfg, &self.fracs, &batch, Readout::Tables(&mut sink)).await?;
        } else {
            let mut sink = |r: usize, cum: u32, freq: u32| -> Result<()> {
                let k = item_of(r);
                if r >= coded_from[k] {
                    let c = &mut coders[k];
                    c.enc.encode(cum, freq);
                    c.coded.push((cum, freq));
                }
                Ok(())
            };
            forward_to_async(b, &self.cfg, &self.fracs, &batch, Readout::Ranges(&symbols, &mut sink)).await?;
        }
        Ok(group
            .iter()
            .zip(coders)
            .map(|(t, c)| {
                let data = items[t.index];
                let coded = finish_coded(c.enc, &c.coded)?;
                let chunk =
                    model_chunk(model, data, t.tokens.len() - t.known, coded).unwrap_or_else(|| plain_chunk(data));
                match framing {
                    Framing::Raw(_) => self.raw_frame(&policy, Some(chunk), data),
                    Framing::File(opts) => {
                        let table = [ChunkInfo {
                            method: chunk.method,
                            original_len: data.len() as u64,
                            stored_len: chunk.payload.len() as u64,
                        }];
                        let mut check = crc32fast::Hasher::new();
                        check.update(&self.fingerprint);
                        check.update(data);
                        let crc = crc32fast::hash(data);
                        let mut out =
                            self.file_head(&policy, opts, &table, data.len() as u64, crc, check.finalize())?;
                        out.extend_from_slice(&chunk.payload);
                        Ok(out)
                    }
                }
            })
            .collect())
    }

    /// The context policy of a file's model chunk, checked against the model and `b`.
    fn model_policy<B: Backend>(&self, info: &Info, b: &B) -> Result<Policy> {
        let policy = self.file_policy(info)?;
        policy
            .validate(&self.cfg)
            .map_err(|e| Error::FormatCorrupt(format!("the file's context policy does not fit the model: {e}")))?;
        self.check_backend(b, &policy)?;
        Ok(policy)
    }

    /// An item's decoded bytes against its stated length and check.
    fn verify(&self, check: Check, len: u64, out: Vec<u8>) -> Result<Vec<u8>> {
        let expected = match check {
            Check::Prefix => return Ok(out),
            Check::Crc32(c) => (c, crc32fast::hash(&out), 8),
            Check::Check16(c) => (c as u32, check16(&self.fingerprint, &out) as u32, 4),
        };
        if out.len() as u64 != len {
            return Err(Error::FormatCorrupt(format!(
                "the data decodes to {} bytes, not {len}",
                out.len()
            )));
        }
        let (want, have, w) = expected;
        if want != have {
            return Err(Error::FormatChecksum {
                expected: format!("{want:0w$x}"),
                actual: format!("{have:0w$x}"),
            });
        }
        Ok(out)
    }
}

/// Item index → its job's position in `jobs` (items without a job: `None`).
fn job_of(n: usize, jobs: &[Job]) -> impl Fn(usize) -> Option<usize> {
    let mut at = vec![None; n];
    for (k, j) in jobs.iter().enumerate() {
        at[j.index] = Some(k);
    }
    move |i| at.get(i).copied().flatten()
}

/// Where a synchronous many-item call puts each result: slot `i` for item `i`.
fn places(n: usize) -> Vec<Option<Result<Vec<u8>>>> {
    (0..n).map(|_| None).collect()
}

/// The results in item order (every item gets one: a call that returns `Ok` has sunk each).
fn gather(v: Vec<Option<Result<Vec<u8>>>>) -> Vec<Result<Vec<u8>>> {
    v.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Internal("an item got no result".into()))))
        .collect()
}
