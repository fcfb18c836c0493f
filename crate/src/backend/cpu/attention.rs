//! Attention: the oracle [`attention_row`] (twin of `shaders/attention.wgsl`), and the tiled
//! and split forms the engine runs (the same bits, faster). The KV cache they read, and its
//! store and shift: `kv.rs`.

use super::fixed::Q_SCALE_Q16;
use super::kv::{quantize_qk, KvCache};
use super::par;
use super::simd::{self, Isa};
use crate::pack::Config;
use crate::wide::{mul_shift, Wide};

/// Causal attention of one query row (all heads, rotated, Q10) at position `pos` over cache
/// rows `base..=base + pos` (its sequence's positions `0..=pos`). Output `[n_heads·head_dim]`, Q23.
///
/// Scores in Q8 log2 units: q is pre-scaled by log2(e)/8 and re-quantised (≤ 511, exponent
/// eq), keys likewise (ek), so `t_j = (q·k_j) · 2^(eq + ek_j − 12)` (|q·k| < 2^24).
/// `p_j = exp2_q15[frac] >> int` of `max − t_j` (≤ 2^15; Σ ≤ ctx·2^15 ≤ 2^28), normalised
/// to Q0.15 by one division each (`p_j·2^15 ≤ 2^30`), then `Σ p'_j v_j` with Σp' ≤ 2^15 + ctx/2
/// and |v| < 2^15 stays below 2^31.
///
/// This is the oracle (the WGSL kernel's twin); the engine runs [`attention_tile_with`], which
/// computes the same bits faster (tested).
#[allow(clippy::too_many_arguments)] // the oracle's operands, as the WGSL twin binds them
pub fn attention_row(
    q: &[i32],
    cache: &KvCache,
    base: usize,
    pos: usize,
    cfg: &Config,
    exp_q15: &[u32],
    out: &mut [i32],
    scratch: &mut Vec<u32>,
) {
    let hd = cfg.head_dim;
    let kvd = cfg.n_kv_heads * hd;
    let group = cfg.n_heads / cfg.n_kv_heads;
    let n = pos + 1;
    let mut qs = vec![0i32; hd];
    let mut qi = vec![0i16; hd];
    scratch.resize(n, 0);
    for (h, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
        let kvh = h / group;
        for (o, &x) in qs.iter_mut().zip(qh) {
            *o = Wide::mul_i32(x, Q_SCALE_Q16).round_shift_sat(16);
        }
        let eq = quantize_qk(&qs, &mut qi);
        let mut tmax = i32::MIN;
        let scores: &mut [u32] = scratch;
        for (j, sc) in scores.iter_mut().enumerate() {
            let r = base + j;
            let kj = &cache.k[r * kvd + kvh * hd..r * kvd + (kvh + 1) * hd];
            let mut dot = 0i32;
            for i in 0..hd {
                dot += qi[i] as i32 * kj[i] as i32;
            }
            let t = Wide::from_i32(dot).round_shift_sat(12 - eq - cache.k_exp[r * cfg.n_kv_heads + kvh]);
            *sc = t as u32; // stash the signed score's bits
            tmax = tmax.max(t);
        }
        let mut sum = 0u32;
        for sc in scores.iter_mut() {
            let d = tmax.wrapping_sub(*sc as i32) as u32; // exact: t ≤ tmax
            let k = d >> 8;
            let p = if k >= 16 { 0 } else { exp_q15[(d & 255) as usize] >> k };
            *sc = p;
            sum += p;
        }
        // sum ≥ 2^15 (the maximum contributes exp_q15[0] = 2^15).
        oh.iter_mut().for_each(|o| *o = 0);
        for (j, &p) in scores.iter().enumerate() {
            if p == 0 {
                continue;
            }
            let pn = ((p << 15) + sum / 2) / sum;
            let r = base + j;
            let vj = &cache.v[r * kvd + kvh * hd..r * kvd + (kvh + 1) * hd];
            for (o, &v) in oh.iter_mut().zip(vj) {
                *o += pn as i32 * v as i32;
            }
        }
    }
}

/// One head of a query row (Q10) pre-scaled by log2(e)/8 and re-quantised into `qi` (as
/// [`attention_row`]); returns the score shift `12 − eq` for `simd::head_scores`.
fn score_query(qh: &[i32], qi: &mut [i16]) -> i32 {
    let mut qs = [0i32; 256];
    for (o, &x) in qs[..qh.len()].iter_mut().zip(qh) {
        *o = mul_shift(x, Q_SCALE_Q16, 16);
    }
    12 - quantize_qk(&qs[..qh.len()], qi)
}

/// Keys per block in [`attention_tile_with`]: 128 keys of one key head are 16 KB of keys
/// (and 16 KB of values), kept in L1/L2 while every query of the tile reads them.
pub const KEY_BLOCK: usize = 128;

/// Scratch of [`attention_tile_with`], reused across calls.
#[derive(Debug, Default)]
pub struct AttnScratch {
    qi: Vec<i16>,
    shift: Vec<i32>,
    tmax: Vec<i32>,
    sum: Vec<u32>,
    scores: Vec<i32>,
    probs: Vec<u32>,
}

/// Attention of a tile of queries with the same bits as [`attention_row`], faster: rows
/// `r` of one sequence (cache rows `base..`), row `r` at position `pos[r]`, heads `heads` of
/// each. `q` holds the rows' heads `heads` (`[rows, heads.len()·head_dim]`), `out` likewise.
///
/// The queries that share a key head (the heads of a GQA group, of every row of the tile)
/// go through the keys together, [`KEY_BLOCK`] keys at a time: a block is read from memory
/// once per tile instead of once per (row, head). Per query the steps are the oracle's:
/// scores (`simd::head_scores`, per block, the maximum carried across blocks), the
/// exponentials, then `Σ pn·v` (`simd::head_values` adds block after block; the partial sums
/// are exact, so the blocks do not change the bits). `i64` instead of 32-bit words and a
/// multiplication instead of a division per key, as the loops of `isa` (which must run here)
/// do it.
#[allow(clippy::too_many_arguments)]
pub fn attention_tile_with(
    isa: Isa,
    q: &[i32],
    heads: std::ops::Range<usize>,
    pos: &[u32],
    cache: &KvCache,
    base: usize,
    cfg: &Config,
    exp_q15: &[u32],
    out: &mut [i32],
    s: &mut AttnScratch,
) {
    let hd = cfg.head_dim;
    let (nkv, nh) = (cfg.n_kv_heads, heads.len());
    let kvd = nkv * hd;
    let group = cfg.n_heads / nkv;
    let width = nh * hd;
    debug_assert!(q.len() == pos.len() * width && out.len() == q.len() && heads.end <= cfg.n_heads && hd <= 256);
    let n_max = pos.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
    let (k, k_exp, v) = (
        &cache.k[base * kvd..(base + n_max) * kvd],
        &cache.k_exp[base * nkv..(base + n_max) * nkv],
        &cache.v[base * kvd..(base + n_max) * kvd],
    );
    out.iter_mut().for_each(|o| *o = 0);
    let mut h0 = heads.start;
    while h0 < heads.end {
        // The heads of this key head in the tile, for every row: queries (row, head).
        let kvh = h0 / group;
        let h1 = ((kvh + 1) * group).min(heads.end);
        let nq = pos.len() * (h1 - h0);
        let query = |i: usize| (i / (h1 - h0), h0 - heads.start + i % (h1 - h0)); // (row, head column)
        s.qi.resize(nq * hd, 0);
        s.shift.resize(nq, 0);
        s.tmax.clear();
        s.tmax.resize(nq, i32::MIN);
        s.sum.resize(nq, 0);
        s.scores.resize(nq * n_max, 0);
        s.probs.resize(nq * n_max, 0);
        for i in 0..nq {
            let (r, c) = query(i);
            s.shift[i] = score_query(
                &q[r * width + c * hd..r * width + (c + 1) * hd],
                &mut s.qi[i * hd..(i + 1) * hd],
            );
        }
        let len = |i: usize| pos[query(i).0] as usize + 1;
        for b0 in (0..n_max).step_by(KEY_BLOCK) {
            for i in 0..nq {
                let b1 = (b0 + KEY_BLOCK).min(len(i));
                if b1 <= b0 {
                    continue;
                }
                let sc = &mut s.scores[i * n_max + b0..i * n_max + b1];
                let m = simd::head_scores(
                    isa,
                    &s.qi[i * hd..(i + 1) * hd],
                    &k[b0 * kvd..b1 * kvd],
                    &k_exp[b0 * nkv..b1 * nkv],
                    kvd,
                    nkv,
                    kvh,
                    s.shift[i],
                    sc,
                );
                s.tmax[i] = s.tmax[i].max(m);
            }
        }
        for i in 0..nq {
            let n = len(i);
            s.sum[i] = simd::head_probs(
                isa,
                &s.scores[i * n_max..i * n_max + n],
                s.tmax[i],
                exp_q15,
                &mut s.probs[i * n_max..i * n_max + n],
            );
        }
        for b0 in (0..n_max).step_by(KEY_BLOCK) {
            for i in 0..nq {
                let b1 = (b0 + KEY_BLOCK).min(len(i));
                if b1 <= b0 {
                    continue;
                }
                let (r, c) = query(i);
                let o = &mut out[r * width + c * hd..r * width + (c + 1) * hd];
                simd::head_values(
                    isa,
                    &s.probs[i * n_max + b0..i * n_max + b1],
                    &v[b0 * kvd..b1 * kvd],
                    kvd,
                    kvh * hd,
                    s.sum[i],
                    o,
                );
            }
        }
        h0 = h1;
    }
}

/// One part of [`attention_split_with`]: key head `kvh` of row `r`, keys `keys`.
struct KeyPart {
    r: usize,
    kvh: usize,
    keys: std::ops::Range<usize>,
    /// Per head of the group: the re-quantised query, its score shift, the part's maximum;
    /// scores and probabilities `[heads, keys]` (the sums are kept per row, not per part).
    s: AttnScratch,
    /// `[heads, head_dim]`
    out: Vec<i32>,
}

/// Attention of a few rows (decoding) with the same bits as [`attention_row`]: each (row,
/// key head) is cut into `parts` ranges of keys that run in parallel, so one token keeps
/// every core busy while each block of keys and values is read once for the key head's
/// whole group of heads (decoding is bound by memory: the cache is read once per token).
/// Three steps: scores and each part's maximum (parallel); the probabilities with the
/// row's maximum and their sums (serial, cheap); `Σ pn·v` over each part with the whole sum
/// (parallel), the parts' outputs added — the sums are exact, so the cut does not change
/// the bits. Row `r` of `q` (`[rows, n_heads·head_dim]`) is at `pos[r]` of the sequence at
/// cache row `base[r]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_split_with(
    isa: Isa,
    q: &[i32],
    base: &[usize],
    pos: &[u32],
    cache: &KvCache,
    cfg: &Config,
    exp_q15: &[u32],
    parts: usize,
) -> Vec<i32> {
    let (hd, nh, nkv) = (cfg.head_dim, cfg.n_heads, cfg.n_kv_heads);
    let (kvd, group, width) = (nkv * hd, nh / nkv, nh * hd);
    let mut work = key_parts(pos, parts, nkv, group, hd);
    let scores = |w: &mut KeyPart| {
        let b = base[w.r];
        let (k, k_exp) = (
            &cache.k[(b + w.keys.start) * kvd..(b + w.keys.end) * kvd],
            &cache.k_exp[(b + w.keys.start) * nkv..(b + w.keys.end) * nkv],
        );
        let m = w.keys.len();
        for i in 0..group {
            let h = w.kvh * group + i;
            w.s.shift[i] = score_query(
                &q[w.r * width + h * hd..w.r * width + (h + 1) * hd],
                &mut w.s.qi[i * hd..(i + 1) * hd],
            );
            for b0 in (0..m).step_by(KEY_BLOCK) {
                let b1 = (b0 + KEY_BLOCK).min(m);
                let t = simd::head_scores(
                    isa,
                    &w.s.qi[i * hd..(i + 1) * hd],
                    &k[b0 * kvd..b1 * kvd],
                    &k_exp[b0 * nkv..b1 * nkv],
                    kvd,
                    nkv,
                    w.kvh,
                    w.s.shift[i],
                    &mut w.s.scores[i * m + b0..i * m + b1],
                );
                w.s.tmax[i] = w.s.tmax[i].max(t);
            }
        }
    };
    par::for_each_mut(&mut work, scores);
    let sum = part_probs(isa, &mut work, pos.len(), nh, group, exp_q15);
    let values = |w: &mut KeyPart| {
        let b = base[w.r];
        let v = &cache.v[(b + w.keys.start) * kvd..(b + w.keys.end) * kvd];
        let m = w.keys.len();
        for i in 0..group {
            let total = sum[w.r * nh + w.kvh * group + i];
            for b0 in (0..m).step_by(KEY_BLOCK) {
                let b1 = (b0 + KEY_BLOCK).min(m);
                simd::head_values(
                    isa,
                    &w.s.probs[i * m + b0..i * m + b1],
                    &v[b0 * kvd..b1 * kvd],
                    kvd,
                    w.kvh * hd,
                    total,
                    &mut w.out[i * hd..(i + 1) * hd],
                );
            }
        }
    };
    par::for_each_mut(&mut work, values);
    add_parts(&work, pos.len(), width, group, hd)
}

/// The parts of [`attention_split_with`], with their scratch: for each row (at `pos[r]`,
/// so `pos[r] + 1` keys) and key head, the keys cut into `parts` ranges of at least a key
/// block each.
fn key_parts(pos: &[u32], parts: usize, nkv: usize, group: usize, hd: usize) -> Vec<KeyPart> {
    let mut work: Vec<KeyPart> = Vec::new();
    for (r, &p) in pos.iter().enumerate() {
        let n = p as usize + 1;
        let per = n.div_ceil(parts.max(1)).max(KEY_BLOCK);
        for kvh in 0..nkv {
            for lo in (0..n).step_by(per) {
                let keys = lo..(lo + per).min(n);
                let m = keys.len();
                let s = AttnScratch {
                    qi: vec![0; group * hd],
                    shift: vec![0; group],
                    tmax: vec![i32::MIN; group],
                    sum: Vec::new(),
                    scores: vec![0; group * m],
                    probs: vec![0; group * m],
                };
                work.push(KeyPart {
                    r,
                    kvh,
                    keys,
                    s,
                    out: vec![0; group * hd],
                });
            }
        }
    }
    work
}

/// The serial middle step of [`attention_split_with`]: per (row, head) the maximum score
/// over the parts, then each part's probabilities with it; returns their sums `[rows, nh]`.
fn part_probs(isa: Isa, work: &mut [KeyPart], rows: usize, nh: usize, group: usize, exp_q15: &[u32]) -> Vec<u32> {
    let mut tmax = vec![i32::MIN; rows * nh];
    for w in work.iter() {
        for i in 0..group {
            let t = &mut tmax[w.r * nh + w.kvh * group + i];
            *t = (*t).max(w.s.tmax[i]);
        }
    }
    let mut sum = vec![0u32; rows * nh];
    for w in work.iter_mut() {
        let m = w.keys.len();
        for i in 0..group {
            let j = w.r * nh + w.kvh * group + i;
            sum[j] += simd::head_probs(
                isa,
                &w.s.scores[i * m..(i + 1) * m],
                tmax[j],
                exp_q15,
                &mut w.s.probs[i * m..(i + 1) * m],
            );
        }
    }
    sum
}

/// The output `[rows, width]` of [`attention_split_with`]: the parts' outputs added.
fn add_parts(work: &[KeyPart], rows: usize, width: usize, group: usize, hd: usize) -> Vec<i32> {
    let mut out = vec![0i32; rows * width];
    for w in work {
        let o = &mut out[w.r * width + w.kvh * group * hd..w.r * width + (w.kvh + 1) * group * hd];
        for (a, &b) in o.iter_mut().zip(&w.out) {
            *a += b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// SmolLM2-135M's attention shape (9 heads, 3 key heads of 64), with the model's 8192
    /// positions; the rest is unused here.
    fn attention_shape() -> Config {
        Config {
            name: String::new(),
            n_layers: 1,
            dim: 576,
            hidden: 64,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            vocab: 2,
            ctx: 8192,
            rope_base: 1e4,
            bos: 0,
            eos: 0,
            doc_start: 0,
            norm_eps_q24: 0,
        }
    }

    /// A cache of `rows` positions for [`attention_tiles_equal_the_oracle`]: random, or
    /// (`extreme`) the largest keys and values of either sign and every key exponent.
    fn tile_cache(r: &mut Rng, rows: usize, kvd: usize, extreme: bool) -> KvCache {
        let k: Vec<i16> = (0..rows * kvd)
            .map(|i| {
                if extreme {
                    [511, -511, 0][i % 3]
                } else {
                    (r.below(1023) as i32 - 511) as i16
                }
            })
            .collect();
        let v: Vec<i16> = (0..rows * kvd)
            .map(|i| {
                if extreme {
                    [i16::MAX, i16::MIN][i % 2]
                } else {
                    r.next_u64() as i16
                }
            })
            .collect();
        let k_exp: Vec<i32> = (0..rows * 3)
            .map(|i| if extreme { (i % 24) as i32 } else { r.below(22) as i32 })
            .collect();
        KvCache { k, k_exp, v }
    }

    /// The tiles [`attention_tiles_equal_the_oracle`] checks in a cache of `rows` positions:
    /// (base, positions of the tile's rows).
    fn tile_cases(rows: usize) -> Vec<(usize, Vec<u32>)> {
        if rows > 8192 {
            vec![
                (3, vec![8188, 8189, 8190, 8191]),
                (0, vec![2047]),
                (1, vec![0]),
                (0, vec![127, 128, 129, 255]),
            ]
        } else if rows > 40 {
            vec![
                (0, vec![0, 1, 2, 3]),
                (5, vec![126, 127, 128]),
                (17, vec![255, 256, 257, 258]),
                (0, vec![0]),
            ]
        } else {
            vec![
                (0, vec![0]),
                (0, vec![36, 37, 38, 39]),
                (5, vec![20, 21]),
                (39, vec![0]),
                (17, vec![22]),
            ]
        }
    }

    /// The engine's attention gives the oracle's bits with every [`Isa`] that runs here, in
    /// tiles of every shape the engine cuts: one head, a key head's group, several rows of
    /// every head (rows at different positions: causal lengths differ inside a tile, across
    /// key blocks). Random and extreme caches and queries, several sequence offsets, contexts
    /// up to the model's 8192.
    #[test]
    fn attention_tiles_equal_the_oracle() {
        let mut r = Rng(31);
        let exp = crate::tables::exp2_table(8, 15);
        let cfg = attention_shape();
        let kvd = 192;
        for (rows, extreme) in [(300, false), (40, true), (8192 + 3, false)] {
            let cache = tile_cache(&mut r, rows, kvd, extreme);
            let row = |r: &mut Rng, kind: usize| -> Vec<i32> {
                match kind % 5 {
                    0 => (0..576).map(|_| (r.next_u64() as i32) >> r.below(24)).collect(),
                    1 => vec![i32::MAX; 576],
                    2 => (0..576).map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN }).collect(),
                    3 => vec![0; 576],
                    _ => (0..576).map(|_| (r.below(2001) as i32 - 1000) << 10).collect(),
                }
            };
            let cases = tile_cases(rows);
            for kind in 0..5 {
                for (base, pos) in &cases {
                    let q: Vec<i32> = (0..pos.len()).flat_map(|i| row(&mut r, kind + i)).collect();
                    let mut want = vec![0; q.len()];
                    for (i, &p) in pos.iter().enumerate() {
                        attention_row(
                            &q[i * 576..(i + 1) * 576],
                            &cache,
                            *base,
                            p as usize,
                            &cfg,
                            &exp,
                            &mut want[i * 576..(i + 1) * 576],
                            &mut Vec::new(),
                        );
                    }
                    for isa in Isa::available() {
                        let mut s = AttnScratch::default();
                        // Every head of every row in one tile.
                        let mut got = vec![7; q.len()];
                        attention_tile_with(isa, &q, 0..9, pos, &cache, *base, &cfg, &exp, &mut got, &mut s);
                        assert_eq!(got, want, "{isa:?} base {base} pos {pos:?} extreme {extreme}");
                        // One row at a time, in head groups of 1, 2 (across key heads) and 3.
                        for split in [1, 2, 3] {
                            let mut got = vec![7; q.len()];
                            for (i, &p) in pos.iter().enumerate() {
                                for h in (0..9).step_by(split) {
                                    let hs = h..(h + split).min(9);
                                    let span = i * 576 + h * 64..i * 576 + hs.end * 64;
                                    attention_tile_with(
                                        isa,
                                        &q[span.clone()],
                                        hs,
                                        &[p],
                                        &cache,
                                        *base,
                                        &cfg,
                                        &exp,
                                        &mut got[span],
                                        &mut s,
                                    );
                                }
                            }
                            assert_eq!(
                                got, want,
                                "{isa:?} split {split} base {base} pos {pos:?} extreme {extreme}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Decoding attention with the keys cut into parts gives the oracle's bits: rows of
    /// different sequences and lengths (one key, a part boundary inside a key block, the
    /// model's 8192), 1 to 5 parts, every [`Isa`] that runs here.
    #[test]
    fn attention_split_equals_the_oracle() {
        let mut r = Rng(37);
        let exp = crate::tables::exp2_table(8, 15);
        let cfg = attention_shape();
        let (kvd, rows) = (192, 8192 + 300);
        let cache = KvCache {
            k: (0..rows * kvd).map(|_| (r.below(1023) as i32 - 511) as i16).collect(),
            k_exp: (0..rows * 3).map(|_| r.below(22) as i32).collect(),
            v: (0..rows * kvd).map(|_| r.next_u64() as i16).collect(),
        };
        for (base, pos) in [
            (vec![0], vec![0u32]),
            (vec![300], vec![8191]),
            (vec![7, 0], vec![300, 2]),
            (vec![0, 8192, 9], vec![1000, 99, 129]),
        ] {
            let q: Vec<i32> = (0..pos.len() * 576)
                .map(|i| {
                    if i % 577 == 0 {
                        i32::MAX
                    } else {
                        (r.next_u64() as i32) >> r.below(24)
                    }
                })
                .collect();
            let mut want = vec![0; q.len()];
            for (i, &p) in pos.iter().enumerate() {
                attention_row(
                    &q[i * 576..(i + 1) * 576],
                    &cache,
                    base[i],
                    p as usize,
                    &cfg,
                    &exp,
                    &mut want[i * 576..(i + 1) * 576],
                    &mut Vec::new(),
                );
            }
            for isa in Isa::available() {
                for parts in 1..=5 {
                    assert_eq!(
                        attention_split_with(isa, &q, &base, &pos, &cache, &cfg, &exp, parts),
                        want,
                        "{isa:?} parts {parts} pos {pos:?}"
                    );
                }
            }
        }
    }
}
