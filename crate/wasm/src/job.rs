//! The work of a call, on any engine and thread.

use lmz::backend::Backend;
use lmz::container::{self, Codec, ItemSink, Options, Progress};
use lmz::eval::Policy;
use lmz::model::Fracs;

use crate::engine::Engine;

/// What a call does; its input is owned, so it can move to a pool worker.
pub(crate) enum Job {
    Compress(Vec<u8>),
    Decompress(Vec<u8>),
    DecompressChunks(Vec<u8>),
    Score(Vec<u8>),
    CompressRaw(Vec<u8>),
    DecompressRaw(Vec<u8>, u64),
    /// Many `.lmz` files, each its own item.
    DecompressMany(Vec<Vec<u8>>),
    /// Many raw streams with their original lengths; `Some(n)`: each stops after ≥ n bytes.
    DecompressRawMany(Vec<(Vec<u8>, u64)>, Option<u64>),
    CompressMany(Vec<Vec<u8>>),
    CompressRawMany(Vec<Vec<u8>>),
}

/// KV windows a many-item call may take at most: 4 × 2,048 positions (190 MB on the CPU
/// engine), the CLI's `DECODE_SLOTS`. Lock-step decoding gives each short stream only the
/// positions it needs, so 4 windows hold dozens of notes at once; more items queue.
pub(crate) const MANY_SLOTS: usize = container::DECODE_SLOTS;

impl Job {
    /// The KV cache slots the CPU engine takes for this call: one per model chunk of a file
    /// to decode, which then decode in lock-step (each step reads the weights once for all
    /// of them), at most `DECODE_SLOTS` as in the CLI; one otherwise (a header that does not
    /// parse gets one: the call reports the error).
    ///
    /// A many-item call takes the windows its items could fill, at most [`MANY_SLOTS`]: an
    /// item of `n` bytes needs at most `n + 1` positions (a token spells at least one byte;
    /// plus the start token), and never more than one window. So 40 notes of 300 bytes take
    /// 3 windows, one note one.
    pub(crate) fn slots(&self, window: usize) -> usize {
        let fill = |lens: &mut dyn Iterator<Item = u64>| {
            let positions = lens.fold(0u64, |t, n| t.saturating_add(n.saturating_add(1).min(window as u64)));
            positions.div_ceil(window.max(1) as u64).clamp(1, MANY_SLOTS as u64) as usize
        };
        match self {
            Job::Decompress(f) | Job::DecompressChunks(f) => container::info(f).map_or(1, |i| i.decode_slots()),
            Job::DecompressMany(files) => {
                fill(&mut files.iter().map(|f| container::info(f).map_or(0, |i| i.original_len)))
            }
            Job::DecompressRawMany(items, prefix) => {
                fill(&mut items.iter().map(|&(_, n)| prefix.map_or(n, |p| p.min(n))))
            }
            Job::CompressMany(items) | Job::CompressRawMany(items) => fill(&mut items.iter().map(|d| d.len() as u64)),
            _ => 1,
        }
    }
}

/// Sizes the CPU engine's KV cache for a call (the GPU engine keeps its one slot). Between
/// calls the engine holds one slot: a multi-chunk file's extra slots are given back after it.
pub(crate) fn set_slots(engine: &mut Engine, slots: usize) -> lmz::Result<()> {
    match engine {
        Engine::Cpu(b) => b.set_slots(slots),
        #[cfg(feature = "gpu")]
        Engine::Gpu(_) => Ok(()),
    }
}

/// What a call gives back (plain Rust data: JS values are made on the calling thread).
pub(crate) enum Out {
    Bytes(Vec<u8>),
    Done,
    Scores { lengths: Vec<u32>, bits: Vec<f64> },
}

/// Runs `job` on engine `b`; `sink` takes `DecompressChunks`' chunks in file order, `items`
/// the many-item calls' results as each is known (any order).
pub(crate) async fn run_job<B: Backend>(
    codec: &Codec,
    fracs: &Fracs,
    b: &mut B,
    job: Job,
    p: &mut dyn Progress,
    sink: &mut dyn FnMut(&[u8]) -> lmz::Result<()>,
    items: &mut ItemSink<'_>,
) -> lmz::Result<Out> {
    Ok(match job {
        Job::Compress(data) => Out::Bytes(codec.compress_async(b, &data, &Options::default(), p).await?),
        Job::Decompress(file) => Out::Bytes(codec.decompress_async(b, &file, p).await?),
        Job::DecompressChunks(file) => {
            codec.decompress_chunks_async(b, &file, p, sink).await?;
            Out::Done
        }
        Job::CompressRaw(data) => Out::Bytes(codec.compress_raw_async(b, &data, container::ModelUse::Auto, p).await?),
        Job::DecompressRaw(raw, len) => Out::Bytes(codec.decompress_raw_async(b, &raw, len, p).await?),
        Job::DecompressMany(files) => {
            let files: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
            codec.decompress_many_async(b, &files, p, items).await?;
            Out::Done
        }
        Job::DecompressRawMany(raws, prefix) => {
            let raws: Vec<(&[u8], u64)> = raws.iter().map(|(r, n)| (r.as_slice(), *n)).collect();
            codec.decompress_raw_many_async(b, &raws, prefix, p, items).await?;
            Out::Done
        }
        Job::CompressMany(data) => {
            let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            codec
                .compress_many_async(b, &data, &Options::default(), p, items)
                .await?;
            Out::Done
        }
        Job::CompressRawMany(data) => {
            let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            codec
                .compress_raw_many_async(b, &data, container::ModelUse::Auto, p, items)
                .await?;
            Out::Done
        }
        Job::Score(data) => {
            let tok = codec.tokenizer();
            let tokens = tok.encode(&data);
            let mut lengths = Vec::with_capacity(tokens.len());
            let mut i = 0;
            while i < tokens.len() {
                if Some(tokens[i]) == tok.escape_token()
                    && i + 1 < tokens.len()
                    && tok.decode(&tokens[i..i + 2]).len() == 1
                {
                    lengths.extend_from_slice(&[0, 1]);
                    i += 2;
                } else {
                    lengths.push(tok.token_bytes(tokens[i]).len() as u32);
                    i += 1;
                }
            }
            // The tables the file is coded with: a text of one chunk in the note frame (its
            // known tokens run first and are not shown), a longer one with the default policy.
            let one_chunk = tokens.len() <= Options::default().chunk_tokens;
            let policy: Policy = match codec.chat_policy() {
                Some(chat) if one_chunk => chat,
                _ => codec.default_policy(),
            };
            let known = codec.known(&policy);
            let k = known.len();
            let all = [known, &tokens[..]].concat();
            let total = (lmz::freq::FREQ_TOTAL as f64).log2();
            let mut bits = vec![0f64; tokens.len()];
            lmz::eval::score_async(
                b,
                codec.config(),
                fracs,
                &all,
                &policy,
                &mut |i, f| {
                    if i >= k {
                        bits[i - k] = total - (f[all[i] as usize] as f64).log2();
                    }
                    Ok(())
                },
                &mut |d, t| p.update(d.saturating_sub(k) as u64, t.saturating_sub(k) as u64),
            )
            .await?;
            Out::Scores { lengths, bits }
        }
    })
}
