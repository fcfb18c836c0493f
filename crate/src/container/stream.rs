//! Chunk by chunk (the browser package's decompressStream).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::eval::Policy;
use crate::model::block_on;
use crate::pack::hex;

use super::decode::Job;
use super::format::{Form, Info, Method, TagPolicy, COMPACT_FP_BYTES};
use super::read::{check16, parse};
use super::{Codec, Progress};

/// Prefixes a corruption error with its chunk when the file has several.
fn in_chunk(e: Error, i: usize, chunks: usize) -> Error {
    match e {
        Error::FormatCorrupt(m) if chunks > 1 => Error::FormatCorrupt(format!("chunk {i}: {m}")),
        e => e,
    }
}

impl Codec {
    /// [`Codec::decompress`], handing the original to `sink` chunk by chunk.
    pub fn decompress_chunks<B: Backend>(
        &self,
        b: &mut B,
        file: &[u8],
        progress: &mut dyn Progress,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
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
    pub async fn decompress_chunks_async<B: Backend>(
        &self,
        b: &mut B,
        file: &[u8],
        progress: &mut dyn Progress,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let p = parse(file)?;
        let info = &p.info;
        let policy = self.file_policy(info)?;
        if info.chunks.iter().any(|c| c.method == Method::Model) {
            policy
                .validate(&self.cfg)
                .map_err(|e| Error::FormatCorrupt(format!("the file's context policy does not fit the model: {e}")))?;
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
                    jobs.push(Job::new(i, payload, ch.original_len, policy));
                } else {
                    self.decode_plain(ch.method, payload, ch.original_len, &mut parts[i - next])
                        .map_err(|e| in_chunk(e, i, n))?;
                    plain += ch.original_len;
                    progress.update(done + plain, total)?;
                }
            }
            let base = done + plain;
            self.decode_streams(b, &jobs, &mut |d| progress.update(base + d, total), &mut |i, r| {
                parts[i - next] = r.map_err(|e| in_chunk(e, i, n))?;
                Ok(())
            })
            .await?;
            for (i, part) in (next..end).zip(parts) {
                let ch = &info.chunks[i];
                if part.len() as u64 != ch.original_len {
                    return Err(Error::FormatCorrupt(format!(
                        "chunk {i} decodes to {} bytes, the table says {}",
                        part.len(),
                        ch.original_len
                    )));
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
                    return Err(Error::FormatChecksum {
                        expected: format!("{:08x}", info.checksum),
                        actual: format!("{crc:08x}"),
                    });
                }
            }
            Form::Compact => {
                let c = check16(&self.fingerprint, &held) as u32;
                if c != info.checksum {
                    return Err(Error::FormatChecksum {
                        expected: format!("{:04x}", info.checksum),
                        actual: format!("{c:04x}"),
                    });
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
    pub(super) fn file_policy(&self, info: &Info) -> Result<Policy> {
        let have = hex(&self.fingerprint);
        match info.form {
            Form::Full => {
                if info.fingerprint[..] != self.fingerprint[..] {
                    return Err(Error::FormatModelMismatch {
                        wanted: format!("is {}", hex(&info.fingerprint)),
                        have,
                    });
                }
                let (window, stride) = info.window_stride.unwrap_or((0, 0));
                Ok(Policy {
                    window: window as usize,
                    stride: stride as usize,
                    start: self.cfg.doc_start,
                    kv: info.kv,
                    adapt: info.adapt,
                    ngram: info.ngram,
                    chat: false,
                })
            }
            Form::Compact => {
                if info.fingerprint[..] != self.fingerprint[..COMPACT_FP_BYTES] {
                    return Err(Error::FormatModelMismatch {
                        wanted: format!("starts with {}", hex(&info.fingerprint)),
                        have,
                    });
                }
                self.tag_policy(TagPolicy {
                    kv: info.kv,
                    adapt: info.adapt,
                    ngram: info.ngram,
                    chat: info.chat,
                })
            }
        }
    }
}
