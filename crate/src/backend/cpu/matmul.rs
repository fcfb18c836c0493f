//! Matmul: the exact int8 block dot products ([`dot_q4`], [`dot_q8`]: the oracles of
//! `shaders/matmul_q4.wgsl` and `shaders/matmul_q8.wgsl`) and the engine's matmuls on its
//! weight layout, in groups of rows shared out among the threads.

use super::layout::{CpuQ4, CpuQ8, GROUP};
use super::par;
use super::quant::QAct;
use super::simd::{self, Isa};
use crate::pack::{Q4Matrix, Q8Matrix};
use crate::wide;

/// Exact `Σ_b T_b·a_b` in 32-bit words: `hi·2^16 + lo` with `T = hi16·2^16 + lo16` split per
/// term (`|T| < 2^30`, `a ≤ 2^12`). `lo` gains < 2^28 per block and is folded into `hi`
/// every 8 blocks (so it stays < 2^32); |hi| ≤ Σ|T>>16|·a ≤ 32 blocks · 2^14·2^12 < 2^31
/// for the Q8 logits (dim ≤ 1024) and 48 · 2^13·2^12 < 2^31 for Q4 rows (≤ 1536 columns).
#[derive(Clone, Copy, Default)]
pub struct SplitAcc {
    hi: i32,
    lo: u32,
    n: u32,
}

impl SplitAcc {
    #[inline(always)]
    pub fn add(&mut self, t: i32, a: u32) {
        self.hi += (t >> 16) * a as i32;
        self.lo += (t as u32 & 0xFFFF) * a;
        self.n += 1;
        if self.n == 8 {
            self.fold();
        }
    }
    #[inline(always)]
    fn fold(&mut self) {
        self.hi += (self.lo >> 16) as i32;
        self.lo &= 0xFFFF;
        self.n = 0;
    }
    /// `round(value · 2^-s)` saturated to i32 (see [`Wide::round_shift_sat`](crate::wide::Wide::round_shift_sat)).
    #[inline(always)]
    pub fn round_shift_sat(mut self, s: i32) -> i32 {
        self.fold();
        // The value is hi·2^16 + lo (< 2^47): `Wide` in WGSL, native i64 here (same bits).
        wide::round_shift_sat_i64(((self.hi as i64) << 16) + self.lo as i64, s)
    }
}

#[inline(always)]
fn dot32(w: &[i8], q: &[i8]) -> i32 {
    let mut s = 0i32;
    for i in 0..32 {
        s += w[i] as i32 * q[i] as i32;
    }
    s
}

/// `Σ nib·q` over one block: `nib` is the block's 16 bytes in ggml's order (byte j holds
/// element j in its low nibble and element j+16 in its high nibble).
#[inline(always)]
fn dot32_nib(nib: &[u8], q: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..16 {
        s += (nib[j] & 15) as i32 * q[j] as i32 + (nib[j] >> 4) as i32 * q[j + 16] as i32;
    }
    s
}

/// One output of a Q4_1 × int8 product: `round(Σ_b (d·S'_b + m·X_b)·a_b · 2^(exp − e_row + frac_out))`
/// with `S'_b = Σ (nib−8)·q = Σ nib·q − 8·X_b`. `nib` holds the row's packed nibbles (`cols/2` bytes).
/// Bounds: |S'| ≤ 8·127·32 = 32512, |X| ≤ 4064, |d|,|m| ≤ 8191 ⇒ |T_b| < 2^29.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the kernel's operands, as the WGSL twin binds them
pub fn dot_q4(
    nib: &[u8],
    d: &[i16],
    m: &[i16],
    e_row: i32,
    q: &[i8],
    a: &[u16],
    sum: &[i32],
    exp: i32,
    frac_out: i32,
) -> i32 {
    let mut acc = SplitAcc::default();
    for (b, (wb, qb)) in nib.chunks_exact(16).zip(q.chunks_exact(32)).enumerate() {
        let t = d[b] as i32 * (dot32_nib(wb, qb) - 8 * sum[b]) + m[b] as i32 * sum[b];
        acc.add(t, a[b] as u32);
    }
    acc.round_shift_sat(e_row - exp - frac_out)
}

/// One output of a Q8_0 × int8 product: `round(Σ_b d·S_b·a_b · 2^(exp − e_row + frac_out))`.
/// |S| ≤ 127·127·32 < 2^19, |d| ≤ 2047 ⇒ |T_b| < 2^30.
#[inline(always)]
pub fn dot_q8(w: &[i8], d: &[i16], e_row: i32, q: &[i8], a: &[u16], exp: i32, frac_out: i32) -> i32 {
    let mut acc = SplitAcc::default();
    for (b, (wb, qb)) in w.chunks_exact(32).zip(q.chunks_exact(32)).enumerate() {
        acc.add(d[b] as i32 * dot32(wb, qb), a[b] as u32);
    }
    acc.round_shift_sat(e_row - exp - frac_out)
}

/// Runs `f(matrix, group, out)` for every group of `group` output rows of each of the `N`
/// matrices (`rows[i]` rows each; the last group may be smaller; `out` is `[rows in the
/// group, tokens]`), all in one parallel loop when enabled (a decoded token's small
/// matmuls share one fork instead of one each), and returns each `[tokens, rows[i]]`.
///
/// With several tokens each group is made in a scratch buffer of its thread (a few KB, in
/// L1) and written at once into its columns of the result, a run of `group` outputs per
/// token: no whole-matrix buffer to clear and transpose afterwards (for the vocabulary at
/// 256 tokens, 50 MB; that pass and its clearing were 10 % of compression).
fn by_groups<const N: usize>(
    rows: [usize; N],
    tokens: usize,
    group: usize,
    f: impl Fn(usize, usize, &mut [i32]) + Sync + Send,
) -> [Vec<i32>; N] {
    let mut out: [Vec<i32>; N] = rows.map(|r| vec![0i32; r * tokens]);
    if tokens == 1 {
        // `[rows, 1]` is `[1, rows]`: the groups write their part of the result in place.
        let mut parts: Vec<(usize, usize, &mut [i32])> = Vec::new();
        for (i, t) in out.iter_mut().enumerate() {
            parts.extend(t.chunks_mut(group).enumerate().map(|(g, o)| (i, g, o)));
        }
        par::for_each(parts, |(i, g, o)| f(i, g, o));
        return out;
    }
    let dst = Columns(out.each_mut().map(|o| o.as_mut_ptr()));
    let parts: Vec<(usize, usize)> = (0..N)
        .flat_map(|i| (0..rows[i].div_ceil(group)).map(move |g| (i, g)))
        .collect();
    let unit = |scratch: &mut Vec<i32>, (i, g): (usize, usize)| {
        let r0 = g * group;
        let n = group.min(rows[i] - r0);
        scratch.resize(n * tokens, 0);
        f(i, g, &mut scratch[..n * tokens]);
        for t in 0..tokens {
            // SAFETY: `out[i]` has `rows[i] · tokens` elements and lives until this function
            // returns, after the loop; task (i, g) alone writes its columns `r0..r0 + n`
            // (`n ≤ rows[i] − r0`) of each row `t`, so the slices of different tasks never
            // overlap and nothing reads `out` meanwhile.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.at(i, t * rows[i] + r0), n) };
            for (r, x) in row.iter_mut().enumerate() {
                *x = scratch[r * tokens + t];
            }
        }
    };
    par::for_each_init(parts, Vec::new, unit);
    out
}

/// The results of [`by_groups`], written column block by column block from its tasks.
struct Columns<const N: usize>([*mut i32; N]);

// SAFETY: the pointers are only used in `by_groups`, whose tasks write disjoint elements.
unsafe impl<const N: usize> Sync for Columns<N> {}

impl<const N: usize> Columns<N> {
    /// Element `k` of result `i` (a method, so that closures capture the whole `Sync` struct).
    fn at(&self, i: usize, k: usize) -> *mut i32 {
        self.0[i].wrapping_add(k)
    }
}

multiversion!(rows_q4(w: &Q4Matrix, x: &QAct, frac_out: i32, r0: usize, o: &mut [i32]) {
    // `o` is `[rows r0.., tokens]`.
    let (cols, nb) = (w.cols, w.cols / 32);
    for (r, orow) in o.chunks_exact_mut(x.tokens).enumerate().map(|(i, o)| (r0 + i, o)) {
        let (wr, dr, mr) = (&w.nib[r * cols / 2..(r + 1) * cols / 2], &w.d[r * nb..(r + 1) * nb], &w.m[r * nb..(r + 1) * nb]);
        for (t, ot) in orow.iter_mut().enumerate() {
            *ot = dot_q4(wr, dr, mr, w.e[r] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], &x.sum[t * nb..(t + 1) * nb], x.exp[t], frac_out);
        }
    }
});

multiversion!(rows_q8(w: &Q8Matrix, x: &QAct, frac_out: i32, r0: usize, o: &mut [i32]) {
    let (cols, nb) = (w.cols, w.cols / 32);
    for (r, orow) in o.chunks_exact_mut(x.tokens).enumerate().map(|(i, o)| (r0 + i, o)) {
        let (wr, dr) = (&w.q[r * cols..(r + 1) * cols], &w.d[r * nb..(r + 1) * nb]);
        for (t, ot) in orow.iter_mut().enumerate() {
            *ot = dot_q8(wr, dr, w.e[r] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], x.exp[t], frac_out);
        }
    }
});

/// `[tokens, rows]` = act · Wᵀ for a Q4_1 matrix in the engine's layout: each group of 8
/// rows through [`simd::groups_q4`] with the fastest [`Isa`] this machine runs, the tail rows
/// through [`dot_q4`] (same bits).
pub fn matmul_q4(w: &CpuQ4, x: &QAct, frac_out: i32) -> Vec<i32> {
    matmul_q4_with(Isa::best(), w, x, frac_out)
}

/// [`matmul_q4`] with the group kernels of `isa` (which must run here: [`Isa::runs`]); the
/// parity tests and `bench.rs` (`bench_kernels`) compare them.
pub fn matmul_q4_with(isa: Isa, w: &CpuQ4, x: &QAct, frac_out: i32) -> Vec<i32> {
    let [out] = matmuls_q4_with(isa, [(w, frac_out)], x);
    out
}

/// [`matmul_q4_with`] of several matrices on the same activations, as one parallel loop.
pub fn matmuls_q4_with<const N: usize>(isa: Isa, ws: [(&CpuQ4, i32); N], x: &QAct) -> [Vec<i32>; N] {
    by_groups(ws.map(|(w, _)| w.rows), x.tokens, isa.unit(x.tokens), |i, u, o| {
        let (w, frac_out) = ws[i];
        let (g, full) = unit_groups(isa.unit(x.tokens), u, w.e.len() / GROUP);
        let (o, tail) = o.split_at_mut(full * GROUP * x.tokens);
        simd::groups_q4(isa, w, g, full, x, frac_out, o);
        if !tail.is_empty() {
            rows_q4(&w.tail, x, frac_out, 0, tail);
        }
    })
}

/// Unit `u` of `unit` rows ([`Isa::unit`]) of a matrix with `groups` full groups: its first
/// group and how many full groups it holds (the rest of the unit, if any, is the matrix's tail
/// rows, from the tail's first: a unit is a whole number of groups and the tail is shorter
/// than one).
fn unit_groups(unit: usize, u: usize, groups: usize) -> (usize, usize) {
    let per = unit / GROUP;
    let g = u * per;
    (g, groups.saturating_sub(g).min(per))
}

/// `[tokens, rows]` = act · Wᵀ for a Q8_0 matrix in the engine's layout.
pub fn matmul_q8(w: &CpuQ8, x: &QAct, frac_out: i32) -> Vec<i32> {
    matmul_q8_with(Isa::best(), w, x, frac_out)
}

/// [`matmul_q8`] with the group kernels of `isa`.
pub fn matmul_q8_with(isa: Isa, w: &CpuQ8, x: &QAct, frac_out: i32) -> Vec<i32> {
    let [out] = by_groups([w.rows], x.tokens, isa.unit(x.tokens), |_, u, o| {
        let (g, full) = unit_groups(isa.unit(x.tokens), u, w.e.len() / GROUP);
        let (o, tail) = o.split_at_mut(full * GROUP * x.tokens);
        simd::groups_q8(isa, w, g, full, x, frac_out, o);
        if !tail.is_empty() {
            rows_q8(&w.tail, x, frac_out, 0, tail);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn exact_dot(ts: &[i128], a: &[u16], s: i32) -> i32 {
        let sum: i128 = ts.iter().zip(a).map(|(&t, &a)| t * a as i128).sum();
        let v = if s > 0 {
            (sum + (1i128 << (s - 1))) >> s
        } else {
            sum << -s
        };
        v.clamp(i32::MIN as i128, i32::MAX as i128) as i32
    }

    #[test]
    fn dot_q4_matches_exact_sum_at_the_extremes() {
        let mut r = Rng(2);
        let nb = 48; // 1536 columns: the largest the bound allows
        for case in 0..40 {
            let pick = |r: &mut Rng, hi: i64| {
                if case < 4 {
                    [hi, -hi, hi, -hi][case]
                } else {
                    r.below(2 * hi as u64 + 1) as i64 - hi
                }
            };
            let w8: Vec<i8> = (0..nb * 32)
                .map(|_| {
                    if case < 4 {
                        [-8, -8, 7, -8][case]
                    } else {
                        pick(&mut r, 8).clamp(-8, 7) as i8
                    }
                })
                .collect();
            let q: Vec<i8> = (0..nb * 32).map(|_| pick(&mut r, 127) as i8).collect();
            let d: Vec<i16> = (0..nb).map(|_| pick(&mut r, 8191) as i16).collect();
            let m: Vec<i16> = (0..nb).map(|_| pick(&mut r, 8191) as i16).collect();
            let a: Vec<u16> = (0..nb)
                .map(|_| if case < 4 { 4096 } else { r.below(4097) as u16 })
                .collect();
            let sum: Vec<i32> = q.chunks(32).map(|c| c.iter().map(|&x| x as i32).sum()).collect();
            let ts: Vec<i128> = (0..nb)
                .map(|b| {
                    d[b] as i128
                        * (0..32)
                            .map(|i| w8[32 * b + i] as i128 * q[32 * b + i] as i128)
                            .sum::<i128>()
                        + m[b] as i128 * sum[b] as i128
                })
                .collect();
            let nib: Vec<u8> = w8
                .chunks(32)
                .flat_map(|b| (0..16).map(move |j| (b[j] + 8) as u8 | ((b[j + 16] + 8) as u8) << 4))
                .collect();
            for s in [-10, 0, 1, 17, 40] {
                assert_eq!(
                    dot_q4(&nib, &d, &m, s, &q, &a, &sum, 0, 0),
                    exact_dot(&ts, &a, s),
                    "case {case} shift {s}"
                );
            }
        }
    }

    #[test]
    fn dot_q8_matches_exact_sum_at_the_extremes() {
        let mut r = Rng(3);
        let nb = 32; // dim 1024: the largest the bound allows
        for case in 0..40 {
            let w: Vec<i8> = (0..nb * 32)
                .map(|_| if case < 2 { -128 } else { r.next_u64() as i8 })
                .collect();
            let q: Vec<i8> = (0..nb * 32)
                .map(|_| {
                    if case < 2 {
                        [-127, 127][case]
                    } else {
                        (r.below(255) as i32 - 127) as i8
                    }
                })
                .collect();
            let d: Vec<i16> = (0..nb)
                .map(|_| {
                    if case < 2 {
                        2047
                    } else {
                        (r.below(4095) as i32 - 2047) as i16
                    }
                })
                .collect();
            let a: Vec<u16> = (0..nb)
                .map(|_| if case < 2 { 4096 } else { r.below(4097) as u16 })
                .collect();
            let ts: Vec<i128> = (0..nb)
                .map(|b| {
                    d[b] as i128
                        * (0..32)
                            .map(|i| w[32 * b + i] as i128 * q[32 * b + i] as i128)
                            .sum::<i128>()
                })
                .collect();
            for s in [-3, 0, 30, 45] {
                assert_eq!(
                    dot_q8(&w, &d, s, &q, &a, 0, 0),
                    exact_dot(&ts, &a, s),
                    "case {case} shift {s}"
                );
            }
        }
    }
}
