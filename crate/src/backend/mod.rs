//! The operations the forward pass is written in, and the engines that implement them.
//!
//! [`crate::model::forward`] is written once against [`Backend`]; the CPU engine
//! ([`cpu::CpuBackend`]) implements every operation with the integer kernels of
//! [`cpu`], which are the oracles for the WGSL kernels (one `shaders/NAME.wgsl` per
//! `cpu::NAME`, with a parity test of the same name). An engine owns its copy of the weights
//! (unpacked for the CPU, uploaded for a GPU) and its KV cache. [`engine`] opens one of them
//! by name (`cpu`, `gpu`, `auto`) for native callers.

pub mod cpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod engine;
#[cfg(feature = "gpu")]
pub mod gpu;

use crate::error::Result;

/// Which matrix of which layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mat {
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
}

/// Which RMSNorm gain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    Attn(usize),
    Ffn(usize),
    Out,
}

/// The receiver of [`Backend::freq_runs`]: `sink(row0, n, tables)`, `tables` the `[n, vocab]`
/// tables of rows `row0..row0 + n`.
pub type RunSink<'a> = dyn FnMut(usize, usize, &[u32]) -> Result<()> + 'a;

/// An engine for the integer forward pass. Activations are `i32` fixed-point matrices
/// `[rows, width]`, row-major; every operation is exact integer arithmetic with the
/// semantics of the `cpu` kernel of the same name.
///
/// The KV cache holds `slots()` independent sequences of `cache_len()` positions each, so one
/// batch may mix rows of several sequences (lock-step decoding of independent chunks, or a
/// prefill next to single-token steps). Row `r` of a batch is at position `pos[r]` of
/// sequence `slot[r]`; rows of one slot come in increasing positions.
pub trait Backend {
    /// An `i32` activation matrix on the engine.
    type Buf;
    /// int8 block-quantised activations (see [`cpu::QAct`]).
    type Q;

    /// The most positions one sequence may use (the KV cache's length per slot).
    fn cache_len(&self) -> usize;
    /// How many independent sequences of `cache_len()` positions the KV cache holds.
    fn slots(&self) -> usize;
    /// Where each slot's positions are in the cache ([`KvMap`]).
    fn kv_map(&self) -> &KvMap;
    /// Places slot `slot` at cache rows `base..base + cap` (`cap ≤ cache_len()`), moving its
    /// first `keep` positions there from where they were (the two regions may overlap).
    /// Checked by [`KvMap::place`].
    fn kv_place(&mut self, slot: usize, base: usize, cap: usize, keep: usize) -> Result<()>;
    /// Back to the fixed layout, [`KvMap::fixed`]`(slots(), cache_len())`; the cache's
    /// contents are kept but belong to no sequence.
    fn kv_reset(&mut self);
    /// Residual stream `[tokens, dim]`, Q12, from the token embedding.
    fn embed(&mut self, tokens: &[u32]) -> Result<Self::Buf>;
    /// RMSNorm times gain; output in the norm's `z_frac` fixed point.
    fn rmsnorm(&mut self, x: &Self::Buf, norm: Norm) -> Self::Buf;
    /// int8 blocks of 32 with a 12-bit mantissa per block and one exponent per token.
    fn quantize(&mut self, z: &Self::Buf, frac: i32) -> Self::Q;
    /// [`Backend::rmsnorm`] then [`Backend::quantize`] of its output (in the norm's fixed
    /// point `frac`): the CPU engine does both per row in one parallel loop. Same bits.
    fn rmsnorm_quantize(&mut self, x: &Self::Buf, norm: Norm, frac: i32) -> Self::Q {
        let z = self.rmsnorm(x, norm);
        self.quantize(&z, frac)
    }
    /// `a · Wᵀ` with output in Q`frac_out`.
    fn matmul(&mut self, w: Mat, a: &Self::Q, frac_out: i32) -> Self::Buf;
    /// [`Backend::matmul`] of several matrices on the same input (`(matrix, frac_out)`), the
    /// outputs in order: the CPU runs them as one parallel loop. Same bits as one by one.
    fn matmuls<const N: usize>(&mut self, ws: [(Mat, i32); N], a: &Self::Q) -> [Self::Buf; N] {
        ws.map(|(w, f)| self.matmul(w, a, f))
    }
    /// Tied output projection, logits in Q10 log2 units.
    fn logits(&mut self, a: &Self::Q) -> Self::Buf;
    /// Rotates `heads` heads of `x` in place; row `r` is at position `pos[r]`.
    fn rope(&mut self, x: &mut Self::Buf, heads: usize, pos: &[u32]);
    /// Stores row `r` of `k`, `v` at position `pos[r]` of sequence `slot[r]` in `layer`'s
    /// cache (every row first), then returns for each row of `q` its attention over positions
    /// `0..=pos[r]` of its sequence, Q23.
    fn attention(
        &mut self,
        layer: usize,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        slot: &[u32],
        pos: &[u32],
    ) -> Self::Buf;
    /// Moves positions `src..src + n` of sequence `slot` to `dst..dst + n` (`dst ≤ src`) in
    /// every layer's cache, the keys re-rotated to their new positions ([`cpu::kv_shift`]):
    /// the context a sliding window keeps instead of recomputing it. Checked by
    /// [`check_shift`].
    fn kv_shift(&mut self, slot: usize, src: usize, dst: usize, n: usize) -> Result<()>;
    /// `silu(gate) · up`, Q10.
    fn silu_mul(&mut self, gate: &Self::Buf, up: &Self::Buf) -> Self::Buf;
    /// [`Backend::silu_mul`] then [`Backend::quantize`] of its output (Q10): one parallel
    /// loop on the CPU engine. Same bits.
    fn silu_mul_quantize(&mut self, gate: &Self::Buf, up: &Self::Buf) -> Self::Q {
        let h = self.silu_mul(gate, up);
        self.quantize(&h, cpu::FFN_FRAC)
    }
    /// `x += y` (saturating).
    fn add(&mut self, x: &mut Self::Buf, y: &Self::Buf);
    /// The rows `idx` of `x`, in that order.
    fn rows(&mut self, x: &Self::Buf, idx: &[u32]) -> Self::Buf;
    /// Frequency tables of every row of `logits`, in runs of consecutive rows, in order:
    /// `sink(row0, n, tables)` with `tables` the `n` rows' tables one after the other
    /// (`[n, vocab]`). An engine makes a run's tables together (the CPU engine on all its
    /// threads, a GPU in one readback), and a caller may use them together: decoding many
    /// streams at once steps each row's stream on its own thread
    /// (`container::decode`). [`Backend::freqs`] hands them over one row at a time.
    ///
    /// The one operation that brings data back to the host, so the one that may wait: it is
    /// async so that a browser's GPU engine can await its readback on the event loop. The CPU
    /// engine and the native GPU engine complete without ever returning `Pending`, which is
    /// what lets the synchronous API ([`crate::model::forward`]) drive them with
    /// [`crate::model::block_on`].
    #[allow(async_fn_in_trait)] // engines are used by generic code only, never as `dyn` or across threads
    async fn freq_runs(&mut self, logits: &Self::Buf, sink: &mut RunSink<'_>) -> Result<()>;

    /// Frequency tables of every row of `logits`, handed to `sink(row, table)` in order
    /// (through [`Backend::freq_runs`]).
    #[allow(async_fn_in_trait)]
    async fn freqs(&mut self, logits: &Self::Buf, sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>) -> Result<()> {
        self.freq_runs(logits, &mut |row0, n, tables| {
            if n == 0 {
                return Ok(());
            }
            if tables.is_empty() || !tables.len().is_multiple_of(n) {
                return Err(crate::error::Error::Internal(format!(
                    "{} table entries for a run of {n} rows",
                    tables.len()
                )));
            }
            for (i, table) in tables.chunks_exact(tables.len() / n).enumerate() {
                sink(row0 + i, table)?;
            }
            Ok(())
        })
        .await
    }

    /// For every row `i` of `logits`, the coder's range of `symbols[i]` in that row's
    /// frequency table — `(cum, freq)` = ([`crate::coder::cum_freq`]) — handed to
    /// `sink(i, cum, freq)` in order: what compression needs, where the next symbol is known.
    /// The default reads whole tables through [`Backend::freqs`]; an engine whose readback is
    /// costly (a GPU: 196 KB per table) computes the ranges where the tables are.
    #[allow(async_fn_in_trait)]
    async fn ranges(
        &mut self,
        logits: &Self::Buf,
        symbols: &[u32],
        sink: &mut dyn FnMut(usize, u32, u32) -> Result<()>,
    ) -> Result<()> {
        self.freqs(logits, &mut |i, table| {
            let s = *symbols
                .get(i)
                .ok_or_else(|| crate::error::Error::InvalidArgument(format!("no symbol for row {i}")))?;
            let (c, f) = crate::coder::cum_freq(table, s)
                .ok_or_else(|| crate::error::Error::InvalidArgument(format!("token {s} outside the vocabulary")))?;
            sink(i, c, f)
        })
        .await
    }
}

/// Where each sequence slot's positions live in an engine's KV cache of `rows()` positions
/// per layer: slot `s` holds positions `0..cap(s)` at cache rows `base(s)..base(s) + cap(s)`.
///
/// An engine starts in the fixed layout ([`KvMap::fixed`]): `slots` sequences of `cache_len`
/// positions each, slot `s` at `s·cache_len`, the other slots empty. A caller that knows how
/// long its sequences are places them itself ([`Backend::kv_place`]): many short streams
/// decoded in lock-step then take the cache a 60-token note needs, not a whole window each
/// (`container::arena`). The engine checks every region lies in the cache; keeping regions
/// of slots in use apart is the caller's work (overlapping regions give wrong tables, never
/// an access outside the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvMap {
    rows: usize,
    cache_len: usize,
    base: Vec<usize>,
    cap: Vec<usize>,
}

impl KvMap {
    /// `slots` sequences of `cache_len` positions, slot `s` at row `s·cache_len`; the other
    /// slots up to [`cpu::MAX_SLOTS`] hold nothing until placed.
    pub fn fixed(slots: usize, cache_len: usize) -> KvMap {
        let n = cpu::MAX_SLOTS;
        KvMap {
            rows: slots * cache_len,
            cache_len,
            base: (0..n).map(|s| if s < slots { s * cache_len } else { 0 }).collect(),
            cap: (0..n).map(|s| if s < slots { cache_len } else { 0 }).collect(),
        }
    }

    /// Positions per layer in the cache: what all slots share.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// How many slots may be placed ([`cpu::MAX_SLOTS`]).
    pub fn streams(&self) -> usize {
        self.base.len()
    }

    /// Positions slot `slot` holds (0 for an unplaced or unknown slot).
    pub fn cap(&self, slot: usize) -> usize {
        self.cap.get(slot).copied().unwrap_or(0)
    }

    /// The cache row of slot `slot`'s position 0.
    pub fn base(&self, slot: usize) -> usize {
        self.base.get(slot).copied().unwrap_or(0)
    }

    /// The cache row of position `pos` of slot `slot` (positions checked by the caller).
    pub fn row(&self, slot: usize, pos: usize) -> usize {
        self.base(slot) + pos
    }

    /// Checks a [`Backend::kv_place`] and records it; returns the slot's old base.
    pub fn place(&mut self, slot: usize, base: usize, cap: usize, keep: usize) -> crate::error::Result<usize> {
        let ok = slot < self.streams()
            && cap <= self.cache_len
            && base.checked_add(cap).is_some_and(|e| e <= self.rows)
            && keep <= cap.min(self.cap(slot));
        if !ok {
            return Err(crate::error::Error::InvalidArgument(format!(
                "kv_place of slot {slot} at rows {base}..{base}+{cap} keeping {keep}: the cache has {} rows, {} slots, at most {} positions a slot, and the slot holds {}",
                self.rows,
                self.streams(),
                self.cache_len,
                self.cap(slot)
            )));
        }
        let old = self.base[slot];
        self.base[slot] = base;
        self.cap[slot] = cap;
        Ok(old)
    }
}

/// The bounds of [`Backend::kv_shift`] on an engine whose slots are placed by `map`: a shift
/// of at most `rope_ctx − 1` positions (the RoPE table's rows) inside the slot.
pub fn check_shift(map: &KvMap, rope_ctx: usize, slot: usize, src: usize, dst: usize, n: usize) -> Result<()> {
    let cap = map.cap(slot);
    if dst > src || src.checked_add(n).is_none_or(|e| e > cap) || src - dst >= rope_ctx {
        return Err(crate::error::Error::InvalidArgument(format!(
            "kv_shift of positions {src}..{src}+{n} to {dst} in slot {slot}: the slot holds {cap} positions and shifts back by less than {rope_ctx}"
        )));
    }
    Ok(())
}
