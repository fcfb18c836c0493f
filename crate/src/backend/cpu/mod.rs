//! The CPU engine and the integer kernels it is made of.
//!
//! Each `pub fn` kernel here is the oracle for the WGSL kernel of the same name in
//! `shaders/`. Every intermediate is bounded to fit 32 bits (the bound is stated where it
//! is not obvious); the few places that need more use [`crate::wide`], which is built from
//! 32-bit words exactly as WGSL must do it. Rounding is always "half up" on the value or on
//! the magnitude as stated, so every engine gets the same bits.
//!
//! Fixed-point formats (fraction bits): residual Q12; q/k Q10; v Q8; attention output Q23;
//! FFN gate/up/hidden Q10; logits Q10 in log2 units. Matmul inputs are int8 blocks (scale-free).
//!
//! One op per file: `fixed.rs` (the formats), `quant.rs` (activation quantisation),
//! `layout.rs` (the engine's weight layout), `matmul.rs`, `elementwise.rs` (embedding,
//! RMSNorm, RoPE, SiLU), `attention.rs`, `kv.rs` (the KV cache), `par.rs` (threads); `simd/` holds
//! the hot loops per instruction set, `bench.rs` their speed. This file: the engine,
//! [`CpuBackend`]. Every item is reached as `cpu::NAME`.

/// Compiles `$body` twice: as is, and with AVX2 enabled (chosen at run time). Both are the
/// same code, exact by construction (integers, or floats whose result is made exact: the
/// activation quantisation), so they give the same bits; AVX2 only lets LLVM use wider vectors.
macro_rules! multiversion {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        multiversion!($name ( $($arg : $ty),* ) -> () $body);
    };
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty $body:block) => {
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { wide($($arg),*) };
                }
            }
            $body
        }
    };
}

mod attention;
#[cfg(test)]
mod bench;
mod elementwise;
mod fixed;
mod kv;
mod layout;
mod matmul;
mod par;
mod quant;
pub mod simd;

pub use attention::{attention_row, attention_split_with, attention_tile_with, AttnScratch, KEY_BLOCK};
pub use elementwise::{embed, rmsnorm_row, rope_row, silu_mul};
pub use fixed::{
    ACT_MANT_MAX, ATT_OUT_FRAC, FFN_FRAC, LOGIT_FRAC, QK_FRAC, QK_INT_MAX, Q_SCALE_Q16, RESID_FRAC, V_FRAC,
};
pub use kv::{kv_shift, kv_store, quantize_qk, KvCache};
pub use layout::{CpuQ4, CpuQ8, GROUP};
pub use matmul::{dot_q4, dot_q8, matmul_q4, matmul_q4_with, matmul_q8, matmul_q8_with, matmuls_q4_with, SplitAcc};
pub use par::threads;
pub use quant::{quantize, quantize_row, quantize_rows, QAct};
pub use simd::Isa;

use crate::backend::{Backend, KvMap, Mat, Norm};
use crate::error::{Error, Result};
use crate::pack::{Config, Model, NormWeight, Tables, Weights};

#[cfg(feature = "parallel")]
use par::PAR_ROWS;
#[cfg(feature = "parallel")]
use rayon::prelude::*;

// --- the engine ---

/// The most sequences one engine's cache holds.
pub const MAX_SLOTS: usize = 256;

std::thread_local! {
    /// Per-thread attention scratch, reused across calls.
    static SCRATCH: std::cell::RefCell<AttnScratch> = std::cell::RefCell::new(AttnScratch::default());
}

/// Rows per attention tile when a batch has many rows (prefill).
pub const ROW_TILE: usize = 4;

/// A tile of [`CpuBackend`]'s attention: rows `rows` (one sequence) × heads `heads`, whose
/// queries and outputs are contiguous in `[rows, n_heads·head_dim]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub rows: std::ops::Range<usize>,
    pub heads: std::ops::Range<usize>,
}

/// How a batch's attention is cut into tasks: with at least `4·threads` tiles of
/// [`ROW_TILE`] rows (a prefill batch), tiles of up to that many consecutive rows of one
/// slot and every head; with fewer rows (decoding), one tile per (row, key head's group of
/// heads), or per (row, head) when that would leave fewer than 4 tiles per thread, so that
/// a single token still spreads over the cores. The tiles cover the batch in order.
pub fn attention_tiles(slot: &[u32], n_heads: usize, group: usize, threads: usize) -> Vec<Tile> {
    let rows = slot.len();
    if rows >= 4 * threads.max(1) * ROW_TILE {
        let mut v = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let mut r1 = r0 + 1;
            while r1 < rows && r1 - r0 < ROW_TILE && slot[r1] == slot[r0] {
                r1 += 1;
            }
            v.push(Tile {
                rows: r0..r1,
                heads: 0..n_heads,
            });
            r0 = r1;
        }
        v
    } else {
        // A key head's whole group per tile when that still gives every thread a few tiles;
        // else one head per tile (measured: single-token decoding on 2 threads, 3 % faster).
        let split = if rows * (n_heads / group.max(1)) >= 4 * threads.max(1) {
            group.max(1)
        } else {
            1
        };
        (0..rows)
            .flat_map(|r| {
                (0..n_heads).step_by(split).map(move |h| Tile {
                    rows: r..r + 1,
                    heads: h..(h + split).min(n_heads),
                })
            })
            .collect()
    }
}

struct CpuLayer {
    attn_norm: NormWeight,
    wq: CpuQ4,
    wk: CpuQ4,
    wv: CpuQ4,
    wo: CpuQ4,
    ffn_norm: NormWeight,
    w_gate: CpuQ4,
    w_up: CpuQ4,
    w_down: CpuQ4,
}

/// Activations on the CPU: `[rows, width]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuBuf {
    pub width: usize,
    pub data: Vec<i32>,
}

impl CpuBuf {
    pub fn rows(&self) -> usize {
        self.data.len() / self.width.max(1)
    }
}

/// Zeroed KV caches of `rows` positions, one per layer.
fn kv_caches(cfg: &Config, rows: usize) -> Vec<KvCache> {
    let kvd = cfg.n_kv_heads * cfg.head_dim;
    (0..cfg.n_layers)
        .map(|_| KvCache {
            k: vec![0; rows * kvd],
            k_exp: vec![0; rows * cfg.n_kv_heads],
            v: vec![0; rows * kvd],
        })
        .collect()
}

/// `slots` sequences of `cache_len` positions fit the model and the engine.
fn check_shape(cfg: &Config, slots: usize, cache_len: usize) -> Result<()> {
    if cache_len == 0 || cache_len > cfg.ctx {
        return Err(Error::InvalidArgument(format!(
            "cache length {cache_len} must be in 1..={}",
            cfg.ctx
        )));
    }
    if slots == 0 || slots > MAX_SLOTS {
        return Err(Error::InvalidArgument(format!(
            "{slots} sequence slots: must be in 1..={MAX_SLOTS}"
        )));
    }
    Ok(())
}

/// The CPU engine: unpacked weights and a KV cache of `slots` sequences of `cache_len`
/// positions per layer.
pub struct CpuBackend {
    cfg: Config,
    slots: usize,
    cache_len: usize,
    embed: CpuQ8,
    layers: Vec<CpuLayer>,
    out_norm: NormWeight,
    tables: Tables,
    cache: Vec<KvCache>,
    map: KvMap,
}

impl CpuBackend {
    /// One sequence of at most `cache_len` positions (≤ the model's context).
    pub fn new(model: &Model, cache_len: usize) -> Result<Self> {
        Self::with_slots(model, 1, cache_len)
    }

    /// `slots` independent sequences of at most `cache_len` positions each.
    pub fn with_slots(model: &Model, slots: usize, cache_len: usize) -> Result<Self> {
        check_shape(model.config(), slots, cache_len)?;
        Self::from_weights(model.config().clone(), model.weights.clone(), slots, cache_len)
    }

    /// [`CpuBackend::with_slots`] from the model itself: each weight matrix becomes the
    /// engine's layout in its own memory, so no second copy of the weights is made (the
    /// browser, which never gives memory back, builds its engine this way).
    pub fn from_model(model: Model, slots: usize, cache_len: usize) -> Result<Self> {
        check_shape(model.config(), slots, cache_len)?;
        Self::from_weights(model.meta.config, model.weights, slots, cache_len)
    }

    fn from_weights(cfg: Config, w: Weights, slots: usize, cache_len: usize) -> Result<Self> {
        let Weights {
            embed,
            layers,
            out_norm,
            tables,
        } = w;
        let layers = layers
            .into_iter()
            .map(|l| CpuLayer {
                attn_norm: l.attn_norm,
                wq: CpuQ4::from_matrix(l.wq),
                wk: CpuQ4::from_matrix(l.wk),
                wv: CpuQ4::from_matrix(l.wv),
                wo: CpuQ4::from_matrix(l.wo),
                ffn_norm: l.ffn_norm,
                w_gate: CpuQ4::from_matrix(l.w_gate),
                w_up: CpuQ4::from_matrix(l.w_up),
                w_down: CpuQ4::from_matrix(l.w_down),
            })
            .collect();
        let cache = kv_caches(&cfg, slots * cache_len);
        Ok(CpuBackend {
            embed: CpuQ8::from_matrix(embed),
            layers,
            out_norm,
            tables,
            cache,
            cfg,
            slots,
            cache_len,
            map: KvMap::fixed(slots, cache_len),
        })
    }

    /// Re-sizes the KV cache to `slots` sequences, emptied (between calls: what the cache held
    /// is gone). The browser engine opens with one and takes more for a file of several
    /// model chunks ([`crate::container::Info::decode_slots`]), then gives them back.
    pub fn set_slots(&mut self, slots: usize) -> Result<()> {
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::InvalidArgument(format!(
                "{slots} sequence slots: must be in 1..={MAX_SLOTS}"
            )));
        }
        if slots != self.slots {
            self.cache = kv_caches(&self.cfg, slots * self.cache_len);
            self.slots = slots;
        }
        self.kv_reset();
        Ok(())
    }

    /// Every layer's KV cache (for tests and tools that look inside).
    pub fn kv_caches(&self) -> &[KvCache] {
        &self.cache
    }

    /// [`CpuBackend::kv_caches`], to write (tests).
    pub fn kv_caches_mut(&mut self) -> &mut [KvCache] {
        &mut self.cache
    }

    fn q4(&self, m: Mat) -> &CpuQ4 {
        match m {
            Mat::Q(l) => &self.layers[l].wq,
            Mat::K(l) => &self.layers[l].wk,
            Mat::V(l) => &self.layers[l].wv,
            Mat::O(l) => &self.layers[l].wo,
            Mat::Gate(l) => &self.layers[l].w_gate,
            Mat::Up(l) => &self.layers[l].w_up,
            Mat::Down(l) => &self.layers[l].w_down,
        }
    }

    fn norm(&self, n: Norm) -> &NormWeight {
        match n {
            Norm::Attn(l) => &self.layers[l].attn_norm,
            Norm::Ffn(l) => &self.layers[l].ffn_norm,
            Norm::Out => &self.out_norm,
        }
    }
}

impl Backend for CpuBackend {
    type Buf = CpuBuf;
    type Q = QAct;

    fn cache_len(&self) -> usize {
        self.cache_len
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn kv_map(&self) -> &KvMap {
        &self.map
    }

    fn kv_place(&mut self, slot: usize, base: usize, cap: usize, keep: usize) -> Result<()> {
        let old = self.map.place(slot, base, cap, keep)?;
        let (kvd, nkv) = (self.cfg.n_kv_heads * self.cfg.head_dim, self.cfg.n_kv_heads);
        if keep > 0 && old != base {
            par::for_each_mut(&mut self.cache, |c: &mut KvCache| {
                c.k.copy_within(old * kvd..(old + keep) * kvd, base * kvd);
                c.k_exp.copy_within(old * nkv..(old + keep) * nkv, base * nkv);
                c.v.copy_within(old * kvd..(old + keep) * kvd, base * kvd);
            });
        }
        Ok(())
    }

    fn kv_reset(&mut self) {
        self.map = KvMap::fixed(self.slots, self.cache_len);
    }

    fn embed(&mut self, tokens: &[u32]) -> Result<CpuBuf> {
        Ok(CpuBuf {
            width: self.cfg.dim,
            data: embed(&self.embed, tokens)?,
        })
    }

    fn rmsnorm(&mut self, x: &CpuBuf, norm: Norm) -> CpuBuf {
        let g = self.norm(norm);
        let mut z = vec![0; x.data.len()];
        let eps = self.cfg.norm_eps_q24;
        #[cfg(feature = "parallel")]
        if x.data.len() >= PAR_ROWS * x.width {
            x.data
                .par_chunks_exact(x.width)
                .zip(z.par_chunks_exact_mut(x.width))
                .for_each(|(xr, zr)| rmsnorm_row(xr, g, eps, zr));
            return CpuBuf {
                width: x.width,
                data: z,
            };
        }
        for (xr, zr) in x.data.chunks_exact(x.width).zip(z.chunks_exact_mut(x.width)) {
            rmsnorm_row(xr, g, eps, zr);
        }
        CpuBuf {
            width: x.width,
            data: z,
        }
    }

    fn quantize(&mut self, z: &CpuBuf, frac: i32) -> QAct {
        quantize(&z.data, z.width, frac)
    }

    fn rmsnorm_quantize(&mut self, x: &CpuBuf, norm: Norm, frac: i32) -> QAct {
        let g = self.norm(norm);
        let (w, eps) = (x.width, self.cfg.norm_eps_q24);
        quantize_rows(x.rows(), w, frac, |t, z| {
            rmsnorm_row(&x.data[t * w..(t + 1) * w], g, eps, z)
        })
    }

    fn silu_mul_quantize(&mut self, gate: &CpuBuf, up: &CpuBuf) -> QAct {
        let (w, silu) = (gate.width, &self.tables.silu);
        quantize_rows(gate.rows(), w, FFN_FRAC, |t, h| {
            silu_mul(&gate.data[t * w..(t + 1) * w], &up.data[t * w..(t + 1) * w], silu, h)
        })
    }

    fn matmul(&mut self, m: Mat, a: &QAct, frac_out: i32) -> CpuBuf {
        let w = self.q4(m);
        CpuBuf {
            width: w.rows,
            data: matmul_q4(w, a, frac_out),
        }
    }

    fn matmuls<const N: usize>(&mut self, ws: [(Mat, i32); N], a: &QAct) -> [CpuBuf; N] {
        let mats = ws.map(|(m, f)| (self.q4(m), f));
        let mut outs = matmuls_q4_with(Isa::best(), mats, a);
        std::array::from_fn(|i| CpuBuf {
            width: mats[i].0.rows,
            data: std::mem::take(&mut outs[i]),
        })
    }

    fn logits(&mut self, a: &QAct) -> CpuBuf {
        CpuBuf {
            width: self.embed.rows,
            data: matmul_q8(&self.embed, a, LOGIT_FRAC),
        }
    }

    fn rope(&mut self, x: &mut CpuBuf, _heads: usize, pos: &[u32]) {
        let w = x.width;
        for (row, &p) in x.data.chunks_exact_mut(w).zip(pos) {
            rope_row(row, self.cfg.head_dim, p as usize, &self.tables);
        }
    }

    fn kv_shift(&mut self, slot: usize, src: usize, dst: usize, n: usize) -> Result<()> {
        let half = (self.cfg.head_dim / 2).max(1);
        crate::backend::check_shift(&self.map, self.tables.rope_cos.len() / half, slot, src, dst, n)?;
        let base = self.map.base(slot);
        let (nkv, hd, t) = (self.cfg.n_kv_heads, self.cfg.head_dim, &self.tables);
        let shift = |c: &mut KvCache| kv_shift(c, base + src, base + dst, n, nkv, hd, t);
        par::for_each_mut(&mut self.cache, shift);
        Ok(())
    }

    fn attention(&mut self, layer: usize, q: &CpuBuf, k: &CpuBuf, v: &CpuBuf, slot: &[u32], pos: &[u32]) -> CpuBuf {
        let (cfg, map) = (&self.cfg, &self.map);
        let cache = &mut self.cache[layer];
        for (r, (kr, vr)) in k
            .data
            .chunks_exact(k.width)
            .zip(v.data.chunks_exact(v.width))
            .enumerate()
        {
            kv_store(cache, map.row(slot[r] as usize, pos[r] as usize), kr, vr, cfg.head_dim);
        }
        let cache = &self.cache[layer];
        let exp = &self.tables.att_exp;
        let (hd, nh) = (cfg.head_dim, cfg.n_heads);
        let threads = threads();
        if slot.len() * cfg.n_kv_heads < 2 * threads && threads > 1 {
            // Fewer (row, key head) pairs than a couple per thread: cut the keys instead.
            let base: Vec<usize> = slot.iter().map(|&s| map.base(s as usize)).collect();
            let parts = (2 * threads).div_ceil(slot.len() * cfg.n_kv_heads);
            return CpuBuf {
                width: q.width,
                data: attention_split_with(Isa::best(), &q.data, &base, pos, cache, cfg, exp, parts),
            };
        }
        let mut out = vec![0i32; q.data.len()];
        let tiles = attention_tiles(slot, nh, nh / cfg.n_kv_heads, threads);
        // Each tile's queries and outputs are one contiguous range, in order.
        let mut parts = Vec::with_capacity(tiles.len());
        let mut rest = &mut out[..];
        for t in &tiles {
            let (r, h) = (t.rows.start, t.heads.start);
            let (lo, hi) = (r * q.width + h * hd, (t.rows.end - 1) * q.width + t.heads.end * hd);
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(hi - lo);
            parts.push((t, lo, part));
            rest = tail;
        }
        let body = |(t, lo, part): (&Tile, usize, &mut [i32])| {
            let r = t.rows.start;
            SCRATCH.with(|s| {
                let s = &mut *s.borrow_mut();
                attention_tile_with(
                    Isa::best(),
                    &q.data[lo..lo + part.len()],
                    t.heads.clone(),
                    &pos[t.rows.clone()],
                    cache,
                    map.base(slot[r] as usize),
                    cfg,
                    exp,
                    part,
                    s,
                );
            });
        };
        par::for_each(parts, body);
        CpuBuf {
            width: q.width,
            data: out,
        }
    }

    fn silu_mul(&mut self, gate: &CpuBuf, up: &CpuBuf) -> CpuBuf {
        let mut out = vec![0; gate.data.len()];
        let (w, silu) = (gate.width, &self.tables.silu);
        #[cfg(feature = "parallel")]
        if out.len() >= PAR_ROWS * w {
            out.par_chunks_mut(w)
                .zip(gate.data.par_chunks(w).zip(up.data.par_chunks(w)))
                .for_each(|(o, (g, u))| silu_mul(g, u, silu, o));
            return CpuBuf { width: w, data: out };
        }
        silu_mul(&gate.data, &up.data, silu, &mut out);
        CpuBuf { width: w, data: out }
    }

    fn add(&mut self, x: &mut CpuBuf, y: &CpuBuf) {
        for (a, &b) in x.data.iter_mut().zip(&y.data) {
            *a = a.saturating_add(b);
        }
    }

    fn rows(&mut self, x: &CpuBuf, idx: &[u32]) -> CpuBuf {
        let w = x.width;
        let mut data = Vec::with_capacity(idx.len() * w);
        for &r in idx {
            data.extend_from_slice(&x.data[r as usize * w..(r as usize + 1) * w]);
        }
        CpuBuf { width: w, data }
    }

    /// The tables of a few rows at a time (two per thread) are made in parallel, then handed
    /// to `sink` as one run: one thread making them all left the others idle (4 % of
    /// compression), and a caller with independent rows (many streams) steps them in
    /// parallel too.
    async fn freq_runs(&mut self, logits: &CpuBuf, sink: &mut crate::backend::RunSink<'_>) -> Result<()> {
        let w = logits.width;
        let per = if cfg!(feature = "parallel") { 2 * threads() } else { 1 };
        let mut f = vec![0u32; per * w];
        let exp = &self.tables.out_exp;
        for (c, rows) in logits.data.chunks(per * w).enumerate() {
            let f = &mut f[..rows.len()];
            par::for_each_chunk(f, rows, w, |f, row| crate::freq::freq_table(row, exp, f));
            sink(c * per, rows.len() / w, f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const EXTREMES: [i32; 7] = [0, 1, -1, i32::MAX, i32::MIN, i32::MAX / 3, -(1 << 20)];

    pub(super) fn rows(r: &mut Rng, width: usize) -> Vec<Vec<i32>> {
        let mut v = vec![vec![0; width], vec![i32::MAX; width], vec![i32::MIN; width]];
        v.push((0..width).map(|i| EXTREMES[i % EXTREMES.len()]).collect());
        v.push(
            (0..width)
                .map(|i| if i == 5 { 100_000_000 } else { (i as i32 % 7) - 3 })
                .collect(),
        );
        for sh in [0, 8, 16, 24, 31] {
            v.push((0..width).map(|_| (r.next_u64() as i32) >> sh).collect());
        }
        v
    }

    /// The engine's cut of a batch into attention tiles covers it in order, rows of one slot
    /// per tile; decoding rows spread over head groups.
    #[test]
    fn attention_tiles_cover_the_batch() {
        let slot: Vec<u32> = [0; 10].into_iter().chain([1; 7]).chain([0; 30]).collect();
        let t = attention_tiles(&slot, 9, 3, 2);
        assert!(t.iter().all(|t| t.heads == (0..9)
            && t.rows.len() <= ROW_TILE
            && t.rows.clone().all(|r| slot[r] == slot[t.rows.start])));
        assert_eq!(
            t.iter().flat_map(|t| t.rows.clone()).collect::<Vec<_>>(),
            (0..slot.len()).collect::<Vec<_>>()
        );
        // Decoding: a key head's group per tile with enough rows, else one head per tile.
        let t = attention_tiles(&[0, 1, 2, 3], 9, 3, 2);
        assert_eq!(t.len(), 12);
        assert_eq!(
            t[4],
            Tile {
                rows: 1..2,
                heads: 3..6
            }
        );
        let t = attention_tiles(&[0], 9, 3, 2);
        assert_eq!(
            t,
            (0..9)
                .map(|h| Tile {
                    rows: 0..1,
                    heads: h..h + 1
                })
                .collect::<Vec<_>>()
        );
    }
}
