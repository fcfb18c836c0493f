//! The forward pass, written once for every engine.
//!
//! `tokens → embed → 30 × [RMSNorm → q,k,v → RoPE → attention → o → +x; RMSNorm → gate,up →
//! SiLU·up → down → +x] → RMSNorm → tied logits → integer frequency tables`.
//!
//! Every operation is a [`Backend`] call with exact integer semantics, so a batch of tokens
//! (prefill) and the same tokens one at a time give the same bits, on any engine.

use crate::backend::{cpu, Backend, KvMap, Mat, Norm, RunSink};
use crate::error::{Error, Result};
use crate::pack::{Config, Weights};

/// Fixed-point scalars of the weights that the forward pass passes to the engine.
#[derive(Debug, Clone)]
pub struct Fracs {
    /// `[n_layers]`
    pub attn_norm: Vec<i32>,
    /// `[n_layers]`
    pub ffn_norm: Vec<i32>,
    pub out_norm: i32,
}

impl Fracs {
    pub fn new(w: &Weights) -> Fracs {
        Fracs {
            attn_norm: w.layers.iter().map(|l| l.attn_norm.z_frac).collect(),
            ffn_norm: w.layers.iter().map(|l| l.ffn_norm.z_frac).collect(),
            out_norm: w.out_norm.z_frac,
        }
    }
}

/// One forward batch: row `r` is token `tokens[r]` at position `pos[r]` of sequence
/// `slot[r]` (rows of one slot in increasing positions, the slot's cache holding the positions
/// before its first row), and `logits` lists the rows whose next-token table is wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub slot: Vec<u32>,
    pub pos: Vec<u32>,
    pub logits: Vec<u32>,
}

impl Batch {
    /// Appends `tokens` of sequence `slot` at positions `pos0..`, wanting tables for those
    /// from index `logits_from` on.
    pub fn push_seq(&mut self, slot: usize, tokens: &[u32], pos0: usize, logits_from: usize) {
        let base = self.tokens.len();
        for (i, &t) in tokens.iter().enumerate() {
            self.tokens.push(t);
            self.slot.push(slot as u32);
            self.pos.push((pos0 + i) as u32);
            if i >= logits_from {
                self.logits.push((base + i) as u32);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.slot.clear();
        self.pos.clear();
        self.logits.clear();
    }

    /// Checks the batch against an engine's cache: slots and positions in range, rows of a
    /// slot in strictly increasing positions, wanted rows in range.
    fn check(&self, map: &KvMap, ctx: usize) -> Result<()> {
        let n = self.tokens.len();
        if self.slot.len() != n || self.pos.len() != n {
            return Err(Error::InvalidArgument(format!(
                "a batch of {n} tokens has {} slots and {} positions",
                self.slot.len(),
                self.pos.len()
            )));
        }
        let mut last: Vec<Option<u32>> = vec![None; map.streams()];
        for (&s, &p) in self.slot.iter().zip(&self.pos) {
            let s = s as usize;
            if s >= map.streams() || map.cap(s) == 0 {
                return Err(Error::InvalidArgument(format!(
                    "sequence slot {s} holds no positions in the engine's cache"
                )));
            }
            let cap = map.cap(s).min(ctx);
            if p as usize >= cap {
                return Err(Error::ContextOverflow {
                    pos: p as usize + 1,
                    ctx: cap,
                });
            }
            if last[s].is_some_and(|q| p <= q) {
                return Err(Error::InvalidArgument(format!(
                    "rows of slot {s} are not in increasing positions"
                )));
            }
            last[s] = Some(p);
        }
        if let Some(&r) = self.logits.iter().find(|&&r| r as usize >= n) {
            return Err(Error::InvalidArgument(format!(
                "logits wanted for row {r} of a batch of {n}"
            )));
        }
        Ok(())
    }
}

/// Runs one batch and hands the frequency table predicting the token after row
/// `batch.logits[i]` to `sink(i, table)`, in order. Synchronous: for engines whose
/// [`Backend::freqs`] never waits (the CPU, a native GPU); see [`forward_async`].
pub fn forward<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    batch: &Batch,
    sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>,
) -> Result<()> {
    block_on(forward_async(b, cfg, fr, batch, sink))
}

/// [`forward`] for any engine, a browser's GPU included: awaits each readback of frequency
/// tables instead of blocking.
pub async fn forward_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    batch: &Batch,
    sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>,
) -> Result<()> {
    forward_to_async(b, cfg, fr, batch, Readout::Tables(sink)).await
}

/// What a forward pass hands back for logits row `i` of a batch.
pub enum Readout<'a> {
    /// The whole frequency table: `sink(i, table)` (decoding, scoring).
    Tables(&'a mut dyn FnMut(usize, &[u32]) -> Result<()>),
    /// The tables of runs of consecutive rows together: `sink(row0, n, tables)`, `tables`
    /// being `[n, vocab]` ([`Backend::freq_runs`]), so that the caller can use the rows of a
    /// run at once (decoding many streams: each row's stream on its own thread).
    Runs(&'a mut RunSink<'a>),
    /// Only the coder's range `(cum, freq)` of the known next symbol `symbols[i]`:
    /// `sink(i, cum, freq)` (compression; [`Backend::ranges`], 8 bytes per row read back
    /// instead of a table).
    Ranges(&'a [u32], &'a mut dyn FnMut(usize, u32, u32) -> Result<()>),
}

/// [`forward_async`] with the readout chosen by `out`.
pub async fn forward_to_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    batch: &Batch,
    mut out: Readout<'_>,
) -> Result<()> {
    batch.check(b.kv_map(), cfg.ctx)?;
    if let Readout::Ranges(symbols, _) = &out {
        if symbols.len() != batch.logits.len() {
            return Err(Error::InvalidArgument(format!(
                "{} symbols for {} rows of logits",
                symbols.len(),
                batch.logits.len()
            )));
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let (slot, pos) = (&batch.slot[..], &batch.pos[..]);
    let mut x = b.embed(&batch.tokens)?;
    for l in 0..cfg.n_layers {
        // --- attention ---
        let a = b.rmsnorm_quantize(&x, Norm::Attn(l), fr.attn_norm[l]);
        let [mut q, mut k, v] = b.matmuls(
            [
                (Mat::Q(l), cpu::QK_FRAC),
                (Mat::K(l), cpu::QK_FRAC),
                (Mat::V(l), cpu::V_FRAC),
            ],
            &a,
        );
        b.rope(&mut q, cfg.n_heads, pos);
        b.rope(&mut k, cfg.n_kv_heads, pos);
        let att = b.attention(l, &q, &k, &v, slot, pos);
        let a = b.quantize(&att, cpu::ATT_OUT_FRAC);
        let o = b.matmul(Mat::O(l), &a, cpu::RESID_FRAC);
        b.add(&mut x, &o);
        // --- feed-forward ---
        let a = b.rmsnorm_quantize(&x, Norm::Ffn(l), fr.ffn_norm[l]);
        let [gate, up] = b.matmuls([(Mat::Gate(l), cpu::FFN_FRAC), (Mat::Up(l), cpu::FFN_FRAC)], &a);
        let a = b.silu_mul_quantize(&gate, &up);
        let down = b.matmul(Mat::Down(l), &a, cpu::RESID_FRAC);
        b.add(&mut x, &down);
    }
    // The output layer in slices of rows: a row of logits is 192 KB, so a whole window's
    // at once would be hundreds of MB.
    let mut base = 0;
    for rows in batch.logits.chunks(LOGIT_ROWS) {
        let xr = b.rows(&x, rows);
        let a = b.rmsnorm_quantize(&xr, Norm::Out, fr.out_norm);
        let logits = b.logits(&a);
        match &mut out {
            Readout::Tables(sink) => b.freqs(&logits, &mut |i, t| sink(base + i, t)).await?,
            Readout::Runs(sink) => b.freq_runs(&logits, &mut |i, n, t| sink(base + i, n, t)).await?,
            Readout::Ranges(symbols, sink) => {
                b.ranges(&logits, &symbols[base..base + rows.len()], &mut |i, c, f| {
                    sink(base + i, c, f)
                })
                .await?
            }
        }
        base += rows.len();
    }
    Ok(())
}

/// Rows of the output layer computed at once (a multiple of the matmul kernels' 4-token groups).
pub const LOGIT_ROWS: usize = 64;

/// One sequence (slot 0): runs `tokens` at positions `pos0..pos0+len` (the cache holding
/// positions `0..pos0` of the same sequence) and hands the table predicting the token after
/// each of `tokens[logits_from..]` to `sink(i, table)`, `i` counted from `logits_from`.
pub fn forward_seq<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    pos0: usize,
    logits_from: usize,
    sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>,
) -> Result<()> {
    block_on(forward_seq_async(b, cfg, fr, tokens, pos0, logits_from, sink))
}

/// [`forward_seq`] for any engine (see [`forward_async`]).
pub async fn forward_seq_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    pos0: usize,
    logits_from: usize,
    sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>,
) -> Result<()> {
    forward_seq_to_async(b, cfg, fr, tokens, pos0, logits_from, Readout::Tables(sink)).await
}

/// [`forward_seq_async`] with the readout chosen by `out` (row `i` = the token after
/// `tokens[logits_from + i]`).
pub async fn forward_seq_to_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    pos0: usize,
    logits_from: usize,
    out: Readout<'_>,
) -> Result<()> {
    let mut batch = Batch::default();
    batch.push_seq(0, tokens, pos0, logits_from);
    forward_to_async(b, cfg, fr, &batch, out).await
}

/// Drives a future of the coding path to completion without an executor: it is polled once,
/// which completes it on every engine whose readback never waits (the CPU engine, a native
/// GPU, which blocks in `device.poll`). A future that would wait — a browser's GPU readback,
/// which needs the event loop — is an error telling the caller to use the async API, never a
/// spin or a hang.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(Error::InvalidArgument(
            "this engine waits for its device: drive it through the async API (forward_async, Codec::compress_async…)"
                .into(),
        )),
    }
}
