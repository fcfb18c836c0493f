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

use crate::backend::{Backend, Mat, Norm};
use crate::error::{Error, Result};
use crate::pack::{Config, Model, NormWeight, Q4Matrix, Q8Matrix, Tables};
use crate::wide::{self, mul_shift, Wide};

#[cfg(feature = "parallel")]
use rayon::prelude::*;

// --- formats ---

pub const RESID_FRAC: i32 = 12;
pub const QK_FRAC: i32 = 10;
pub const V_FRAC: i32 = 8;
pub const ATT_OUT_FRAC: i32 = 23;
pub const FFN_FRAC: i32 = 10;
pub const LOGIT_FRAC: i32 = crate::freq::LOGIT_FRAC;
/// Largest per-block activation mantissa.
pub const ACT_MANT_MAX: u32 = 4096;
/// q and k are re-quantised to |·| ≤ 511 per (token, head) with a power-of-two scale.
pub const QK_INT_MAX: u32 = 511;
/// round(log2(e) / sqrt(64) · 2^16): folds the softmax scale and the change to log2 units
/// into q.
pub const Q_SCALE_Q16: i32 = 11819;

// --- activation quantisation ---

/// int8 activations in blocks of 32: value ≈ `q · a[block] · 2^exp[token]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QAct {
    pub tokens: usize,
    pub width: usize,
    /// `[tokens, width]`, |q| ≤ 127
    pub q: Vec<i8>,
    /// `[tokens, width/32]`, ≤ 4096
    pub a: Vec<u16>,
    /// `[tokens, width/32]`, Σ q over the block (|·| ≤ 4064)
    pub sum: Vec<i32>,
    /// `[tokens]`
    pub exp: Vec<i32>,
}

/// `ceil(m · 2^(7−e) / 127)`; callers ensure the result is what they want to test against 4096.
fn act_mant(m: u32, e: u32) -> u32 {
    if e >= 7 {
        // divisor 127·2^(e−7) < 2^31 for e ≤ 30; m + divisor − 1 < 2^32.
        let div = 127u32 << (e - 7).min(24);
        (m / div) + !m.is_multiple_of(div) as u32
    } else if m >= 1 << 24 {
        u32::MAX // certainly > 4096: m·2^(7−e)/127 ≥ 2^24·2/127
    } else {
        let num = m << (7 - e); // < 2^31
        num.div_ceil(127)
    }
}

/// `floor(num / den)` for `num < 2^31`, `1 ≤ den ≤ 2^28`, with `inv = ceil(2^64 / den)` (any
/// value when `den = 1`): `floor(num · inv / 2^64)` is exact, because the error
/// `num · (inv − 2^64/den) / 2^64 < 2^-33` is below the gap `1/den ≥ 2^-28` between `num/den`
/// and the next integer.
#[inline(always)]
fn div_by(num: u32, den: u32, inv: u64) -> u32 {
    if den == 1 {
        num
    } else {
        ((num as u128 * inv as u128) >> 64) as u32
    }
}

/// Threads the engine's parallel loops run on: rayon's (the current pool's, else the global
/// one's; in the threaded wasm build, the Web Workers of `initThreadPool`), 1 without the
/// `parallel` feature.
pub fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "parallel"))]
    1
}

/// Quantises one row `z` (fixed point with `frac` fraction bits) in place into `q`, `a`,
/// `sum`; returns the row's exponent.
pub fn quantize_row(z: &[i32], frac: i32, q: &mut [i8], a: &mut [u16], sum: &mut [i32]) -> i32 {
    let mut m_all = 0u32;
    for &v in z {
        m_all = m_all.max(v.unsigned_abs());
    }
    // Smallest E with every block mantissa ≤ 4096 (E ≤ 21 since m < 2^32).
    let mut e = 0u32;
    while act_mant(m_all, e) > ACT_MANT_MAX {
        e += 1;
    }
    for (b, blk) in z.chunks_exact(32).enumerate() {
        let mb = blk.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
        let ab = act_mant(mb, e);
        a[b] = ab as u16;
        let mut s = 0i32;
        // q = round(|v| / den), den = ab · 2^(e−7), by a multiplication with ceil(2^64/den)
        // instead of a division per element (see `div_by`).
        let den = if e >= 7 { ab << (e - 7) } else { ab };
        let inv = if den > 1 { (1u128 << 64).div_ceil(den as u128) as u64 } else { 0 };
        for (i, &v) in blk.iter().enumerate() {
            let qv = if ab == 0 {
                0
            } else {
                // q = round(|v| / (ab · 2^(e−7))), exact: num < 2^31 (|v| ≤ mb ≤ 127·4096 when e < 7),
                // den ≤ 4096·2^14. |v| ≤ ab·127·2^(e−7) so q ≤ 127.
                let num = if e >= 7 { v.unsigned_abs() } else { v.unsigned_abs() << (7 - e) };
                let qu = div_by(num, den, inv);
                let r = num - qu * den;
                let qu = qu + (r >= den - r) as u32; // r ≥ den/2, no overflow
                if v < 0 {
                    -(qu as i32)
                } else {
                    qu as i32
                }
            };
            q[32 * b + i] = qv as i8;
            s += qv;
        }
        sum[b] = s;
    }
    e as i32 - 7 - frac
}

/// Quantises `[tokens, width]`.
pub fn quantize(z: &[i32], width: usize, frac: i32) -> QAct {
    let tokens = z.len() / width;
    let nb = width / 32;
    let mut out = QAct { tokens, width, q: vec![0; z.len()], a: vec![0; tokens * nb], sum: vec![0; tokens * nb], exp: vec![0; tokens] };
    let row = |(((q, a), sum), (exp, z)): QuantRow| *exp = quantize_row(z, frac, q, a, sum);
    #[cfg(feature = "parallel")]
    if tokens >= PAR_ROWS {
        // Rows are independent: in parallel for a batch (serial, they were 6 % of compression).
        out.q.par_chunks_mut(width).zip(out.a.par_chunks_mut(nb)).zip(out.sum.par_chunks_mut(nb)).zip(out.exp.par_iter_mut().zip(z.par_chunks(width))).for_each(row);
        return out;
    }
    out.q.chunks_mut(width).zip(out.a.chunks_mut(nb)).zip(out.sum.chunks_mut(nb)).zip(out.exp.iter_mut().zip(z.chunks(width))).for_each(row);
    out
}

/// One row of [`quantize`]: its `q`, `a`, `sum` and `exp` to fill, and its input.
type QuantRow<'a> = (((&'a mut [i8], &'a mut [u16]), &'a mut [i32]), (&'a mut i32, &'a [i32]));

/// Rows from which the row-wise steps (quantisation, norms, SiLU) of a batch go in parallel:
/// below it (decoding) a fork costs more than the rows.
#[allow(dead_code)] // without the `parallel` feature
const PAR_ROWS: usize = 8;

// --- matmul ---

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
    /// `round(value · 2^-s)` saturated to i32 (see [`Wide::round_shift_sat`]).
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
pub fn dot_q4(nib: &[u8], d: &[i16], m: &[i16], e_row: i32, q: &[i8], a: &[u16], sum: &[i32], exp: i32, frac_out: i32) -> i32 {
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
fn by_groups<const N: usize>(rows: [usize; N], tokens: usize, group: usize, f: impl Fn(usize, usize, &mut [i32]) + Sync + Send) -> [Vec<i32>; N] {
    let mut out: [Vec<i32>; N] = rows.map(|r| vec![0i32; r * tokens]);
    if tokens == 1 {
        // `[rows, 1]` is `[1, rows]`: the groups write their part of the result in place.
        let mut parts: Vec<(usize, usize, &mut [i32])> = Vec::new();
        for (i, t) in out.iter_mut().enumerate() {
            parts.extend(t.chunks_mut(group).enumerate().map(|(g, o)| (i, g, o)));
        }
        #[cfg(feature = "parallel")]
        parts.into_par_iter().for_each(|(i, g, o)| f(i, g, o));
        #[cfg(not(feature = "parallel"))]
        parts.into_iter().for_each(|(i, g, o)| f(i, g, o));
        return out;
    }
    let dst = Columns(out.each_mut().map(|o| o.as_mut_ptr()));
    let parts: Vec<(usize, usize)> = (0..N).flat_map(|i| (0..rows[i].div_ceil(group)).map(move |g| (i, g))).collect();
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
    #[cfg(feature = "parallel")]
    parts.into_par_iter().for_each_init(Vec::new, unit);
    #[cfg(not(feature = "parallel"))]
    {
        let mut scratch = Vec::new();
        parts.into_iter().for_each(|p| unit(&mut scratch, p));
    }
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

// --- the CPU engine's weight layout ---

/// Rows per interleaved group.
pub const GROUP: usize = 8;

/// A Q4_1 matrix in the CPU engine's layout, chosen when the engine is built: rows in groups
/// of 8, interleaved so that one 32-byte load holds 4 consecutive weights of each of the 8
/// rows (an 8-lane kernel's operand, one lane per row: no horizontal sums). Rows after the
/// last full group stay in the pack's layout (`tail`). Same numbers as the pack's matrix.
#[derive(Debug, Clone)]
pub struct CpuQ4 {
    pub rows: usize,
    pub cols: usize,
    /// `[groups, blocks, 4, 32]`: for the block's steps `2p`, `2p+1` (elements `8p..8p+4`
    /// and `8p+4..8p+8`), byte `4i + e` holds row `i`'s element `8p + e` in its low nibble and
    /// element `8p + 4 + e` in its high nibble.
    pub w: Vec<u8>,
    /// `[groups, blocks, 8]`
    pub d: Vec<i16>,
    /// `[groups, blocks, 8]`
    pub m: Vec<i16>,
    /// `[groups·8]`
    pub e: Vec<i8>,
    pub tail: Q4Matrix,
}

/// Element `j` (0..32) of a block's nibbles in ggml's order.
#[inline(always)]
fn nib_at(blk: &[u8], j: usize) -> u8 {
    if j < 16 {
        blk[j] & 15
    } else {
        blk[j - 16] >> 4
    }
}

impl CpuQ4 {
    pub fn new(w: &Q4Matrix) -> CpuQ4 {
        let (nb, groups) = (w.cols / 32, w.rows / GROUP);
        let mut out = CpuQ4 { rows: w.rows, cols: w.cols, w: vec![0; groups * nb * 128], d: vec![0; groups * nb * GROUP], m: vec![0; groups * nb * GROUP], e: w.e[..groups * GROUP].to_vec(), tail: tail_q4(w, groups * GROUP) };
        for g in 0..groups {
            for b in 0..nb {
                let dst = &mut out.w[(g * nb + b) * 128..(g * nb + b + 1) * 128];
                for i in 0..GROUP {
                    let r = g * GROUP + i;
                    let blk = &w.nib[r * w.cols / 2 + 16 * b..r * w.cols / 2 + 16 * (b + 1)];
                    for p in 0..4 {
                        for e in 0..4 {
                            dst[32 * p + 4 * i + e] = nib_at(blk, 8 * p + e) | nib_at(blk, 8 * p + 4 + e) << 4;
                        }
                    }
                    out.d[(g * nb + b) * GROUP + i] = w.d[r * nb + b];
                    out.m[(g * nb + b) * GROUP + i] = w.m[r * nb + b];
                }
            }
        }
        out
    }

    /// Row `i` of group `g`, block `b`, as the pack's 16 nibble bytes (ggml order).
    #[cfg(test)]
    fn block(&self, g: usize, i: usize, b: usize) -> [u8; 16] {
        let nb = self.cols / 32;
        let src = &self.w[(g * nb + b) * 128..(g * nb + b + 1) * 128];
        let mut el = [0u8; 32];
        for p in 0..4 {
            for e in 0..4 {
                let v = src[32 * p + 4 * i + e];
                el[8 * p + e] = v & 15;
                el[8 * p + 4 + e] = v >> 4;
            }
        }
        std::array::from_fn(|j| el[j] | el[j + 16] << 4)
    }
}

fn tail_q4(w: &Q4Matrix, from: usize) -> Q4Matrix {
    let (c, nb) = (w.cols, w.cols / 32);
    Q4Matrix { rows: w.rows - from, cols: c, nib: w.nib[from * c / 2..].to_vec(), d: w.d[from * nb..].to_vec(), m: w.m[from * nb..].to_vec(), e: w.e[from..].to_vec() }
}

/// A Q8_0 matrix in the CPU engine's layout: as [`CpuQ4`], one byte per weight:
/// `[groups, blocks, 8 steps, 32]` with byte `4i + e` of step `k` = row `i`'s element `4k + e`.
#[derive(Debug, Clone)]
pub struct CpuQ8 {
    pub rows: usize,
    pub cols: usize,
    pub q: Vec<i8>,
    /// `[groups, blocks, 8]`
    pub d: Vec<i16>,
    /// `[groups·8]`
    pub e: Vec<i8>,
    /// `[groups, blocks, 8]`: Σ of the row's 32 weights in the block (|·| ≤ 4064), for the
    /// relaxed-SIMD kernel (which sums `w·(x + 128)`); empty in every other build.
    pub ws: Vec<i16>,
    pub tail: Q8Matrix,
}

impl CpuQ8 {
    pub fn new(w: &Q8Matrix) -> CpuQ8 {
        let (c, nb, groups) = (w.cols, w.cols / 32, w.rows / GROUP);
        let from = groups * GROUP;
        let tail = Q8Matrix { rows: w.rows - from, cols: c, q: w.q[from * c..].to_vec(), d: w.d[from * nb..].to_vec(), e: w.e[from..].to_vec() };
        let sums = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));
        let mut out = CpuQ8 { rows: w.rows, cols: c, q: vec![0; groups * GROUP * c], d: vec![0; groups * nb * GROUP], e: w.e[..from].to_vec(), ws: vec![0; if sums { groups * nb * GROUP } else { 0 }], tail };
        for g in 0..groups {
            for b in 0..nb {
                for i in 0..GROUP {
                    let r = g * GROUP + i;
                    for j in 0..32 {
                        out.q[(g * nb + b) * 256 + 32 * (j / 4) + 4 * i + j % 4] = w.q[r * c + 32 * b + j];
                    }
                    out.d[(g * nb + b) * GROUP + i] = w.d[r * nb + b];
                    if sums {
                        out.ws[(g * nb + b) * GROUP + i] = w.q[r * c + 32 * b..r * c + 32 * b + 32].iter().map(|&v| v as i16).sum();
                    }
                }
            }
        }
        out
    }

    /// `(q, d)` of row `r`, column `c`.
    #[inline]
    pub fn at(&self, r: usize, c: usize) -> (i8, i16) {
        let nb = self.cols / 32;
        let groups = self.e.len() / GROUP;
        if r >= groups * GROUP {
            let r = r - groups * GROUP;
            return (self.tail.q[r * self.cols + c], self.tail.d[r * nb + c / 32]);
        }
        let (g, i, b, j) = (r / GROUP, r % GROUP, c / 32, c % 32);
        (self.q[(g * nb + b) * 256 + 32 * (j / 4) + 4 * i + j % 4], self.d[(g * nb + b) * GROUP + i])
    }

    #[inline]
    pub fn exp(&self, r: usize) -> i8 {
        let from = self.e.len();
        if r >= from {
            self.tail.e[r - from]
        } else {
            self.e[r]
        }
    }
}

/// Compiles `$body` twice: as is, and with AVX2 enabled (chosen at run time). Both are the
/// same integer code, so they give the same bits; AVX2 only lets LLVM use wider vectors.
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

pub mod simd;
pub use simd::Isa;
#[cfg(test)]
mod bench;

// --- embedding, norm, rope, silu ---

/// Residual rows (Q12) of the given tokens from the Q8_0 embedding.
pub fn embed(w: &CpuQ8, tokens: &[u32]) -> Result<Vec<i32>> {
    let dim = w.cols;
    let mut out = Vec::with_capacity(tokens.len() * dim);
    for &t in tokens {
        let r = t as usize;
        if r >= w.rows {
            return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary of {}", w.rows)));
        }
        let sh = w.exp(r) as i32 - RESID_FRAC;
        for c in 0..dim {
            let (q, d) = w.at(r, c);
            // |d·q| ≤ 2047·127 < 2^18
            out.push(wide::round_shift_sat_i64(d as i64 * q as i64, sh));
        }
    }
    Ok(out)
}

/// RMSNorm of one Q12 row times the gain, output with `g.z_frac` fraction bits.
///
/// Sum of squares on a dynamically pre-shifted copy (|x| >> s < 2^11, so dim·2^22 < 2^32 for
/// dim ≤ 1024); the unshifted x is then multiplied by 1/rms (a 16-bit reciprocal of a 16-bit
/// integer square root), so channels far below the outlier channels keep their precision.
pub fn rmsnorm_row(x: &[i32], g: &NormWeight, eps_q24: u32, z: &mut [i32]) {
    let m = x.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
    let mut s = 0u32;
    while (m >> s) >= 2048 {
        s += 1;
    }
    let mut ss = 0u32;
    for v in x {
        let u = v.unsigned_abs() >> s;
        ss += u * u;
    }
    let v = ss / x.len() as u32 + (eps_q24 >> (2 * s).min(31));
    if v == 0 {
        z.iter_mut().for_each(|o| *o = 0);
        return;
    }
    // v < 2^22 + eps: normalise to [2^28, 2^30) by an even shift, then sqrt(4v') ∈ [2^15, 2^16).
    let mut vn = v;
    let mut k = 0i32;
    while vn < 1 << 28 {
        vn <<= 2;
        k += 1;
    }
    let sq = wide::isqrt(vn << 2);
    // 1/sqrt(v) = r · 2^(k−30), r = round(2^31 / sq) ∈ (2^15, 2^16]
    let r = ((1u32 << 31) + sq / 2) / sq;
    // y (Q24) = x · 2^-s / sqrt(v) = x · r · 2^(k − s − 6); |y| ≤ ~sqrt(dim)·2^24 < 2^30
    let sh_y = s as i32 + 6 - k;
    let sh_z = 24 + g.g_exp - g.z_frac;
    for ((o, &xi), &gi) in z.iter_mut().zip(x).zip(&g.g) {
        let y = mul_shift(xi, r as i32, sh_y);
        *o = mul_shift(y, gi, sh_z);
    }
}

/// Rotates adjacent pairs (llama.cpp's normal RoPE mode) of each head of one row at `pos`.
/// Values Q10 (any range: the products are [`Wide`]); tables Q1.14.
pub fn rope_row(x: &mut [i32], head_dim: usize, pos: usize, t: &Tables) {
    let half = head_dim / 2;
    let (cos, sin) = (&t.rope_cos[pos * half..(pos + 1) * half], &t.rope_sin[pos * half..(pos + 1) * half]);
    for h in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (x0, x1) = (h[2 * i], h[2 * i + 1]);
            let (c, s) = (cos[i] as i32, sin[i] as i32);
            // |x·c − y·s| ≤ 2·2^31·2^14 = 2^46: a `Wide` in WGSL, i64 here (same bits).
            let (x0, x1, c, s) = (x0 as i64, x1 as i64, c as i64, s as i64);
            h[2 * i] = wide::round_shift_sat_i64(x0 * c - x1 * s, crate::tables::ROPE_FRAC as i32);
            h[2 * i + 1] = wide::round_shift_sat_i64(x0 * s + x1 * c, crate::tables::ROPE_FRAC as i32);
        }
    }
}

/// `silu(gate) · up`, all Q10. SiLU by linear interpolation in a table of step 1/64 on
/// [−16, 16]; outside it silu(g) = g (g ≥ 16) or 0 (g < −16), both within 2^-10 of exact.
pub fn silu_mul(gate: &[i32], up: &[i32], silu: &[i32], out: &mut [i32]) {
    let centre = (silu.len() / 2) as i32;
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let idx = (g >> 4) + centre;
        let s = if idx < 0 {
            0
        } else if idx >= 2 * centre {
            g
        } else {
            let (a, b) = (silu[idx as usize], silu[idx as usize + 1]);
            a + (((b - a) * (g & 15) + 8) >> 4) // |b − a| ≤ 18: no overflow
        };
        *o = mul_shift(s, u, FFN_FRAC);
    }
}

// --- attention ---

/// Re-quantises a vector to |·| ≤ 511 with a power-of-two scale: returns the exponent.
pub fn quantize_qk(x: &[i32], out: &mut [i16]) -> i32 {
    let m = x.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
    let rs = |v: u32, e: u32| if e == 0 { v } else { (v >> e) + ((v >> (e - 1)) & 1) }; // round half up
    let mut e = 0u32;
    while rs(m, e) > QK_INT_MAX {
        e += 1;
    }
    for (o, &v) in out.iter_mut().zip(x) {
        let q = rs(v.unsigned_abs(), e) as i16;
        *o = if v < 0 { -q } else { q };
    }
    e as i32
}

/// A layer's KV cache: keys quantised per (position, kv head), values Q8 in i16. Row
/// `slot·cache_len + pos` holds position `pos` of sequence `slot`.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// `[slots·cache_len, n_kv·head_dim]`
    pub k: Vec<i16>,
    /// `[slots·cache_len, n_kv]`
    pub k_exp: Vec<i32>,
    /// `[slots·cache_len, n_kv·head_dim]`
    pub v: Vec<i16>,
}

/// Writes cache row `row` from a rotated Q10 key row and a Q8 value row.
pub fn kv_store(cache: &mut KvCache, row: usize, k: &[i32], v: &[i32], head_dim: usize) {
    let kvd = k.len();
    for (h, kh) in k.chunks_exact(head_dim).enumerate() {
        let e = quantize_qk(kh, &mut cache.k[row * kvd + h * head_dim..row * kvd + (h + 1) * head_dim]);
        cache.k_exp[row * (kvd / head_dim) + h] = e;
    }
    for (o, &x) in cache.v[row * kvd..(row + 1) * kvd].iter_mut().zip(v) {
        *o = x.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
}

/// Moves cache rows `src..src + n` to `dst..dst + n` (`dst ≤ src`, rows of one sequence),
/// the keys re-rotated from position `p` to `p − (src − dst)`: the context a sliding window
/// keeps ([`crate::eval::KvMode::Shift`]). Per key head: each stored pair (integers in units
/// of 2^e) is rotated by −δθ with the RoPE table's row δ = `src − dst` (products < 2^24,
/// rounded half up like [`rope_row`]), then re-quantised to |·| ≤ 511 by [`quantize_qk`],
/// whose exponent adds to e (a pair's length is kept, so that is at most +1 per shift, and
/// rarely any). Values are copied. Rows are done in increasing order, each read whole
/// before it is written, so an overlap of the two ranges is safe.
pub fn kv_shift(cache: &mut KvCache, src: usize, dst: usize, n: usize, nkv: usize, head_dim: usize, t: &Tables) {
    debug_assert!(dst <= src && head_dim <= 256);
    let delta = src - dst;
    let kvd = nkv * head_dim;
    let half = head_dim / 2;
    let (cos, sin) = (&t.rope_cos[delta * half..(delta + 1) * half], &t.rope_sin[delta * half..(delta + 1) * half]);
    let mut rot = [0i32; 256];
    let mut q = [0i16; 256];
    for r in 0..n {
        let (s, d) = (src + r, dst + r);
        for h in 0..nkv {
            let ks = &cache.k[s * kvd + h * head_dim..s * kvd + (h + 1) * head_dim];
            for i in 0..half {
                let (x0, x1) = (ks[2 * i] as i64, ks[2 * i + 1] as i64);
                let (c, sn) = (cos[i] as i64, sin[i] as i64);
                rot[2 * i] = wide::round_shift_sat_i64(x0 * c + x1 * sn, crate::tables::ROPE_FRAC as i32);
                rot[2 * i + 1] = wide::round_shift_sat_i64(x1 * c - x0 * sn, crate::tables::ROPE_FRAC as i32);
            }
            let e2 = quantize_qk(&rot[..head_dim], &mut q[..head_dim]);
            let e = cache.k_exp[s * nkv + h] + e2;
            cache.k[d * kvd + h * head_dim..d * kvd + (h + 1) * head_dim].copy_from_slice(&q[..head_dim]);
            cache.k_exp[d * nkv + h] = e;
        }
        cache.v.copy_within(s * kvd..(s + 1) * kvd, d * kvd);
    }
}

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
pub fn attention_row(q: &[i32], cache: &KvCache, base: usize, pos: usize, cfg: &Config, exp_q15: &[u32], out: &mut [i32], scratch: &mut Vec<u32>) {
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
pub fn attention_tile_with(isa: Isa, q: &[i32], heads: std::ops::Range<usize>, pos: &[u32], cache: &KvCache, base: usize, cfg: &Config, exp_q15: &[u32], out: &mut [i32], s: &mut AttnScratch) {
    let hd = cfg.head_dim;
    let (nkv, nh) = (cfg.n_kv_heads, heads.len());
    let kvd = nkv * hd;
    let group = cfg.n_heads / nkv;
    let width = nh * hd;
    debug_assert!(q.len() == pos.len() * width && out.len() == q.len() && heads.end <= cfg.n_heads && hd <= 256);
    let n_max = pos.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
    let (k, k_exp, v) = (&cache.k[base * kvd..(base + n_max) * kvd], &cache.k_exp[base * nkv..(base + n_max) * nkv], &cache.v[base * kvd..(base + n_max) * kvd]);
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
            s.shift[i] = score_query(&q[r * width + c * hd..r * width + (c + 1) * hd], &mut s.qi[i * hd..(i + 1) * hd]);
        }
        let len = |i: usize| pos[query(i).0] as usize + 1;
        for b0 in (0..n_max).step_by(KEY_BLOCK) {
            for i in 0..nq {
                let b1 = (b0 + KEY_BLOCK).min(len(i));
                if b1 <= b0 {
                    continue;
                }
                let sc = &mut s.scores[i * n_max + b0..i * n_max + b1];
                let m = simd::head_scores(isa, &s.qi[i * hd..(i + 1) * hd], &k[b0 * kvd..b1 * kvd], &k_exp[b0 * nkv..b1 * nkv], kvd, nkv, kvh, s.shift[i], sc);
                s.tmax[i] = s.tmax[i].max(m);
            }
        }
        for i in 0..nq {
            let n = len(i);
            s.sum[i] = simd::head_probs(isa, &s.scores[i * n_max..i * n_max + n], s.tmax[i], exp_q15, &mut s.probs[i * n_max..i * n_max + n]);
        }
        for b0 in (0..n_max).step_by(KEY_BLOCK) {
            for i in 0..nq {
                let b1 = (b0 + KEY_BLOCK).min(len(i));
                if b1 <= b0 {
                    continue;
                }
                let (r, c) = query(i);
                let o = &mut out[r * width + c * hd..r * width + (c + 1) * hd];
                simd::head_values(isa, &s.probs[i * n_max + b0..i * n_max + b1], &v[b0 * kvd..b1 * kvd], kvd, kvh * hd, s.sum[i], o);
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
pub fn attention_split_with(isa: Isa, q: &[i32], base: &[usize], pos: &[u32], cache: &KvCache, cfg: &Config, exp_q15: &[u32], parts: usize) -> Vec<i32> {
    let (hd, nh, nkv) = (cfg.head_dim, cfg.n_heads, cfg.n_kv_heads);
    let (kvd, group, width) = (nkv * hd, nh / nkv, nh * hd);
    let mut work: Vec<KeyPart> = Vec::new();
    for (r, &p) in pos.iter().enumerate() {
        let n = p as usize + 1;
        let per = n.div_ceil(parts.max(1)).max(KEY_BLOCK);
        for kvh in 0..nkv {
            for lo in (0..n).step_by(per) {
                let keys = lo..(lo + per).min(n);
                let m = keys.len();
                let s = AttnScratch { qi: vec![0; group * hd], shift: vec![0; group], tmax: vec![i32::MIN; group], sum: Vec::new(), scores: vec![0; group * m], probs: vec![0; group * m] };
                work.push(KeyPart { r, kvh, keys, s, out: vec![0; group * hd] });
            }
        }
    }
    let scores = |w: &mut KeyPart| {
        let b = base[w.r];
        let (k, k_exp) = (&cache.k[(b + w.keys.start) * kvd..(b + w.keys.end) * kvd], &cache.k_exp[(b + w.keys.start) * nkv..(b + w.keys.end) * nkv]);
        let m = w.keys.len();
        for i in 0..group {
            let h = w.kvh * group + i;
            w.s.shift[i] = score_query(&q[w.r * width + h * hd..w.r * width + (h + 1) * hd], &mut w.s.qi[i * hd..(i + 1) * hd]);
            for b0 in (0..m).step_by(KEY_BLOCK) {
                let b1 = (b0 + KEY_BLOCK).min(m);
                let t = simd::head_scores(isa, &w.s.qi[i * hd..(i + 1) * hd], &k[b0 * kvd..b1 * kvd], &k_exp[b0 * nkv..b1 * nkv], kvd, nkv, w.kvh, w.s.shift[i], &mut w.s.scores[i * m + b0..i * m + b1]);
                w.s.tmax[i] = w.s.tmax[i].max(t);
            }
        }
    };
    #[cfg(feature = "parallel")]
    work.par_iter_mut().for_each(scores);
    #[cfg(not(feature = "parallel"))]
    work.iter_mut().for_each(scores);
    // Per (row, head): the maximum over the parts, then the probabilities and their sum.
    let mut tmax = vec![i32::MIN; pos.len() * nh];
    for w in &work {
        for i in 0..group {
            let t = &mut tmax[w.r * nh + w.kvh * group + i];
            *t = (*t).max(w.s.tmax[i]);
        }
    }
    let mut sum = vec![0u32; pos.len() * nh];
    for w in &mut work {
        let m = w.keys.len();
        for i in 0..group {
            let j = w.r * nh + w.kvh * group + i;
            sum[j] += simd::head_probs(isa, &w.s.scores[i * m..(i + 1) * m], tmax[j], exp_q15, &mut w.s.probs[i * m..(i + 1) * m]);
        }
    }
    let values = |w: &mut KeyPart| {
        let b = base[w.r];
        let v = &cache.v[(b + w.keys.start) * kvd..(b + w.keys.end) * kvd];
        let m = w.keys.len();
        for i in 0..group {
            let total = sum[w.r * nh + w.kvh * group + i];
            for b0 in (0..m).step_by(KEY_BLOCK) {
                let b1 = (b0 + KEY_BLOCK).min(m);
                simd::head_values(isa, &w.s.probs[i * m + b0..i * m + b1], &v[b0 * kvd..b1 * kvd], kvd, w.kvh * hd, total, &mut w.out[i * hd..(i + 1) * hd]);
            }
        }
    };
    #[cfg(feature = "parallel")]
    work.par_iter_mut().for_each(values);
    #[cfg(not(feature = "parallel"))]
    work.iter_mut().for_each(values);
    let mut out = vec![0i32; pos.len() * width];
    for w in &work {
        let o = &mut out[w.r * width + w.kvh * group * hd..w.r * width + (w.kvh + 1) * group * hd];
        for (a, &b) in o.iter_mut().zip(&w.out) {
            *a += b;
        }
    }
    out
}

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
            v.push(Tile { rows: r0..r1, heads: 0..n_heads });
            r0 = r1;
        }
        v
    } else {
        // A key head's whole group per tile when that still gives every thread a few tiles;
        // else one head per tile (measured: single-token decoding on 2 threads, 3 % faster).
        let split = if rows * (n_heads / group.max(1)) >= 4 * threads.max(1) { group.max(1) } else { 1 };
        (0..rows).flat_map(|r| (0..n_heads).step_by(split).map(move |h| Tile { rows: r..r + 1, heads: h..(h + split).min(n_heads) })).collect()
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
    (0..cfg.n_layers).map(|_| KvCache { k: vec![0; rows * kvd], k_exp: vec![0; rows * cfg.n_kv_heads], v: vec![0; rows * kvd] }).collect()
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
}

impl CpuBackend {
    /// One sequence of at most `cache_len` positions (≤ the model's context).
    pub fn new(model: &Model, cache_len: usize) -> Result<Self> {
        Self::with_slots(model, 1, cache_len)
    }

    /// `slots` independent sequences of at most `cache_len` positions each.
    pub fn with_slots(model: &Model, slots: usize, cache_len: usize) -> Result<Self> {
        let cfg = model.config().clone();
        if cache_len == 0 || cache_len > cfg.ctx {
            return Err(Error::InvalidArgument(format!("cache length {cache_len} must be in 1..={}", cfg.ctx)));
        }
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::InvalidArgument(format!("{slots} sequence slots: must be in 1..={MAX_SLOTS}")));
        }
        let w = &model.weights;
        let layers = w
            .layers
            .iter()
            .map(|l| CpuLayer {
                attn_norm: l.attn_norm.clone(),
                wq: CpuQ4::new(&l.wq),
                wk: CpuQ4::new(&l.wk),
                wv: CpuQ4::new(&l.wv),
                wo: CpuQ4::new(&l.wo),
                ffn_norm: l.ffn_norm.clone(),
                w_gate: CpuQ4::new(&l.w_gate),
                w_up: CpuQ4::new(&l.w_up),
                w_down: CpuQ4::new(&l.w_down),
            })
            .collect();
        let cache = kv_caches(&cfg, slots * cache_len);
        Ok(CpuBackend { embed: CpuQ8::new(&w.embed), layers, out_norm: w.out_norm.clone(), tables: w.tables.clone(), cache, cfg, slots, cache_len })
    }

    /// Re-sizes the KV cache to `slots` sequences, emptied (between calls: what the cache held
    /// is gone). The browser engine opens with one and takes more for a file of several
    /// model chunks ([`crate::container::Info::decode_slots`]), then gives them back.
    pub fn set_slots(&mut self, slots: usize) -> Result<()> {
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::InvalidArgument(format!("{slots} sequence slots: must be in 1..={MAX_SLOTS}")));
        }
        if slots != self.slots {
            self.cache = kv_caches(&self.cfg, slots * self.cache_len);
            self.slots = slots;
        }
        Ok(())
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

    fn embed(&mut self, tokens: &[u32]) -> Result<CpuBuf> {
        Ok(CpuBuf { width: self.cfg.dim, data: embed(&self.embed, tokens)? })
    }

    fn rmsnorm(&mut self, x: &CpuBuf, norm: Norm) -> CpuBuf {
        let g = match norm {
            Norm::Attn(l) => &self.layers[l].attn_norm,
            Norm::Ffn(l) => &self.layers[l].ffn_norm,
            Norm::Out => &self.out_norm,
        };
        let mut z = vec![0; x.data.len()];
        let eps = self.cfg.norm_eps_q24;
        #[cfg(feature = "parallel")]
        if x.data.len() >= PAR_ROWS * x.width {
            x.data.par_chunks_exact(x.width).zip(z.par_chunks_exact_mut(x.width)).for_each(|(xr, zr)| rmsnorm_row(xr, g, eps, zr));
            return CpuBuf { width: x.width, data: z };
        }
        for (xr, zr) in x.data.chunks_exact(x.width).zip(z.chunks_exact_mut(x.width)) {
            rmsnorm_row(xr, g, eps, zr);
        }
        CpuBuf { width: x.width, data: z }
    }

    fn quantize(&mut self, z: &CpuBuf, frac: i32) -> QAct {
        quantize(&z.data, z.width, frac)
    }

    fn matmul(&mut self, m: Mat, a: &QAct, frac_out: i32) -> CpuBuf {
        let w = self.q4(m);
        CpuBuf { width: w.rows, data: matmul_q4(w, a, frac_out) }
    }

    fn matmuls<const N: usize>(&mut self, ws: [(Mat, i32); N], a: &QAct) -> [CpuBuf; N] {
        let mats = ws.map(|(m, f)| (self.q4(m), f));
        let mut outs = matmuls_q4_with(Isa::best(), mats, a);
        std::array::from_fn(|i| CpuBuf { width: mats[i].0.rows, data: std::mem::take(&mut outs[i]) })
    }

    fn logits(&mut self, a: &QAct) -> CpuBuf {
        CpuBuf { width: self.embed.rows, data: matmul_q8(&self.embed, a, LOGIT_FRAC) }
    }

    fn rope(&mut self, x: &mut CpuBuf, _heads: usize, pos: &[u32]) {
        let w = x.width;
        for (row, &p) in x.data.chunks_exact_mut(w).zip(pos) {
            rope_row(row, self.cfg.head_dim, p as usize, &self.tables);
        }
    }

    fn kv_shift(&mut self, slot: usize, src: usize, dst: usize, n: usize) -> Result<()> {
        let half = (self.cfg.head_dim / 2).max(1);
        crate::backend::check_shift(self.slots, self.cache_len, self.tables.rope_cos.len() / half, slot, src, dst, n)?;
        let base = slot * self.cache_len;
        let (nkv, hd, t) = (self.cfg.n_kv_heads, self.cfg.head_dim, &self.tables);
        let shift = |c: &mut KvCache| kv_shift(c, base + src, base + dst, n, nkv, hd, t);
        #[cfg(feature = "parallel")]
        self.cache.par_iter_mut().for_each(shift);
        #[cfg(not(feature = "parallel"))]
        self.cache.iter_mut().for_each(shift);
        Ok(())
    }

    fn attention(&mut self, layer: usize, q: &CpuBuf, k: &CpuBuf, v: &CpuBuf, slot: &[u32], pos: &[u32]) -> CpuBuf {
        let (cfg, cl) = (&self.cfg, self.cache_len);
        let cache = &mut self.cache[layer];
        for (r, (kr, vr)) in k.data.chunks_exact(k.width).zip(v.data.chunks_exact(v.width)).enumerate() {
            kv_store(cache, slot[r] as usize * cl + pos[r] as usize, kr, vr, cfg.head_dim);
        }
        let cache = &self.cache[layer];
        let exp = &self.tables.att_exp;
        let (hd, nh) = (cfg.head_dim, cfg.n_heads);
        let threads = threads();
        if slot.len() * cfg.n_kv_heads < 2 * threads && threads > 1 {
            // Fewer (row, key head) pairs than a couple per thread: cut the keys instead.
            let base: Vec<usize> = slot.iter().map(|&s| s as usize * cl).collect();
            let parts = (2 * threads).div_ceil(slot.len() * cfg.n_kv_heads);
            return CpuBuf { width: q.width, data: attention_split_with(Isa::best(), &q.data, &base, pos, cache, cfg, exp, parts) };
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
                attention_tile_with(Isa::best(), &q.data[lo..lo + part.len()], t.heads.clone(), &pos[t.rows.clone()], cache, slot[r] as usize * cl, cfg, exp, part, s);
            });
        };
        #[cfg(feature = "parallel")]
        parts.into_par_iter().for_each(body);
        #[cfg(not(feature = "parallel"))]
        parts.into_iter().for_each(body);
        CpuBuf { width: q.width, data: out }
    }

    fn silu_mul(&mut self, gate: &CpuBuf, up: &CpuBuf) -> CpuBuf {
        let mut out = vec![0; gate.data.len()];
        let (w, silu) = (gate.width, &self.tables.silu);
        #[cfg(feature = "parallel")]
        if out.len() >= PAR_ROWS * w {
            out.par_chunks_mut(w).zip(gate.data.par_chunks(w).zip(up.data.par_chunks(w))).for_each(|(o, (g, u))| silu_mul(g, u, silu, o));
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
    /// to `sink` in order: `sink` (the coder, the adaptive bias) is sequential, the tables are
    /// not, and one thread making them all left the others idle (4 % of compression).
    async fn freqs(&mut self, logits: &CpuBuf, sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>) -> Result<()> {
        let w = logits.width;
        let per = if cfg!(feature = "parallel") { 2 * threads() } else { 1 };
        let mut f = vec![0u32; per * w];
        let exp = &self.tables.out_exp;
        for (c, rows) in logits.data.chunks(per * w).enumerate() {
            let f = &mut f[..rows.len()];
            #[cfg(feature = "parallel")]
            f.par_chunks_mut(w).zip(rows.par_chunks(w)).for_each(|(f, row)| crate::freq::freq_table(row, exp, f));
            #[cfg(not(feature = "parallel"))]
            f.chunks_mut(w).zip(rows.chunks(w)).for_each(|(f, row)| crate::freq::freq_table(row, exp, f));
            for (i, table) in f.chunks(w).enumerate() {
                sink(c * per + i, table)?;
            }
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

    fn rows(r: &mut Rng, width: usize) -> Vec<Vec<i32>> {
        let mut v = vec![vec![0; width], vec![i32::MAX; width], vec![i32::MIN; width]];
        v.push((0..width).map(|i| EXTREMES[i % EXTREMES.len()]).collect());
        v.push((0..width).map(|i| if i == 5 { 100_000_000 } else { (i as i32 % 7) - 3 }).collect());
        for sh in [0, 8, 16, 24, 31] {
            v.push((0..width).map(|_| (r.next_u64() as i32) >> sh).collect());
        }
        v
    }

    #[test]
    fn quantize_is_exact_rounding_within_bounds() {
        let mut r = Rng(1);
        for z in rows(&mut r, 96) {
            let (mut q, mut a, mut s) = (vec![0i8; 96], vec![0u16; 3], vec![0i32; 3]);
            let exp = quantize_row(&z, 0, &mut q, &mut a, &mut s);
            let e = exp + 7; // frac = 0
            assert!(e >= 0);
            for b in 0..3 {
                assert!(a[b] as u32 <= ACT_MANT_MAX);
                assert_eq!(s[b], q[32 * b..32 * b + 32].iter().map(|&x| x as i32).sum::<i32>());
                for i in 0..32 {
                    let (zi, qi) = (z[32 * b + i] as i128, q[32 * b + i] as i128);
                    assert!(qi.abs() <= 127);
                    if a[b] == 0 {
                        assert_eq!(zi, 0);
                        continue;
                    }
                    // q = round(|z| / (a·2^(e−7))) with the sign of z, computed exactly.
                    let den = (a[b] as i128) << e; // times 2^-7
                    let want = ((zi.abs() * 128 * 2 + den) / (2 * den)) * zi.signum();
                    assert_eq!(qi, want, "z {zi} a {} e {e}", a[b]);
                }
            }
        }
    }

    /// The division by a multiplication is exact over its whole domain: every power-of-two
    /// boundary of the divisor, random and extreme numerators.
    #[test]
    fn division_by_multiplication_is_exact() {
        let mut r = Rng(5);
        for sh in 0..=28 {
            for den in [1u32 << sh, (1 << sh) + 1, ((1u64 << sh) - 1).max(1) as u32, (r.next_u64() as u32 >> (32 - sh.max(1))).max(1)] {
                let inv = if den > 1 { (1u128 << 64).div_ceil(den as u128) as u64 } else { 0 };
                for num in [0, 1, den - 1, den, den.saturating_mul(127).min((1 << 31) - 1), (1 << 31) - 1, r.next_u64() as u32 >> 1, (r.next_u64() as u32 >> 1) / den * den] {
                    assert_eq!(div_by(num, den, inv), num / den, "{num} / {den}");
                }
            }
        }
    }

    fn shift_tables(ctx: usize, hd: usize) -> Tables {
        let (rope_cos, rope_sin) = crate::tables::rope(ctx, hd, 1e4);
        Tables { rope_cos, rope_sin, att_exp: vec![], out_exp: vec![], silu: vec![] }
    }

    /// A key stored at position p and shifted by δ is the key stored at p − δ, up to the
    /// rounding of one more rotation; a shift by 0 changes nothing; overlapping ranges give
    /// what a copy through a second cache gives.
    #[test]
    fn kv_shift_re_rotates_keys_to_their_new_positions() {
        let (nkv, hd, ctx) = (3, 64, 200);
        let t = shift_tables(ctx, hd);
        let kvd = nkv * hd;
        let mut r = Rng(41);
        let keys: Vec<Vec<i32>> = (0..30).map(|_| (0..kvd).map(|_| (r.below(1 << 16) as i32 - (1 << 15)) << r.below(8)).collect()).collect();
        let vals: Vec<i32> = (0..kvd).map(|_| r.below(60000) as i32 - 30000).collect();
        let store = |pos0: usize, rows: usize| {
            let mut c = KvCache { k: vec![0; rows * kvd], k_exp: vec![0; rows * nkv], v: vec![0; rows * kvd] };
            for (i, k) in keys.iter().enumerate() {
                let mut k = k.clone();
                rope_row(&mut k, hd, pos0 + i, &t);
                kv_store(&mut c, pos0 + i, &k, &vals, hd);
            }
            c
        };
        let (p, delta) = (120, 97);
        let mut shifted = store(p, 160);
        kv_shift(&mut shifted, p, p - delta, keys.len(), nkv, hd, &t);
        let direct = store(p - delta, 160);
        let mut worst = 0f64;
        for i in 0..keys.len() {
            let row = p - delta + i;
            assert_eq!(shifted.v[row * kvd..(row + 1) * kvd], direct.v[row * kvd..(row + 1) * kvd]);
            for h in 0..nkv {
                let val = |c: &KvCache, j: usize| c.k[row * kvd + h * hd + j] as f64 * 2f64.powi(c.k_exp[row * nkv + h]);
                let scale = 511.0 * 2f64.powi(direct.k_exp[row * nkv + h]);
                for j in 0..hd {
                    worst = worst.max((val(&shifted, j) - val(&direct, j)).abs() / scale);
                }
            }
        }
        // Two roundings of a 9-bit mantissa: a few units in 511.
        assert!(worst < 4.0 / 511.0, "worst relative error {worst}");
        // Shift by 0: the same cache.
        let c = store(10, 50);
        let mut same = c.clone();
        kv_shift(&mut same, 10, 10, 30, nkv, hd, &t);
        assert_eq!((same.k, same.k_exp, same.v), (c.k.clone(), c.k_exp.clone(), c.v.clone()));
        // Overlap (rows 10..40 → 3..33) equals going through a separate copy.
        let mut overlapped = c.clone();
        kv_shift(&mut overlapped, 10, 3, 30, nkv, hd, &t);
        let mut copy = c.clone();
        for row in 3..33 {
            // Each row shifted alone from the untouched original.
            let mut one = c.clone();
            kv_shift(&mut one, row + 7, row, 1, nkv, hd, &t);
            copy.k[row * kvd..(row + 1) * kvd].copy_from_slice(&one.k[row * kvd..(row + 1) * kvd]);
            copy.k_exp[row * nkv..(row + 1) * nkv].copy_from_slice(&one.k_exp[row * nkv..(row + 1) * nkv]);
            copy.v[row * kvd..(row + 1) * kvd].copy_from_slice(&one.v[row * kvd..(row + 1) * kvd]);
        }
        assert_eq!((overlapped.k, overlapped.k_exp, overlapped.v), (copy.k, copy.k_exp, copy.v));
    }

    fn exact_dot(ts: &[i128], a: &[u16], s: i32) -> i32 {
        let sum: i128 = ts.iter().zip(a).map(|(&t, &a)| t * a as i128).sum();
        let v = if s > 0 { (sum + (1i128 << (s - 1))) >> s } else { sum << -s };
        v.clamp(i32::MIN as i128, i32::MAX as i128) as i32
    }

    #[test]
    fn dot_q4_matches_exact_sum_at_the_extremes() {
        let mut r = Rng(2);
        let nb = 48; // 1536 columns: the largest the bound allows
        for case in 0..40 {
            let pick = |r: &mut Rng, hi: i64| if case < 4 { [hi, -hi, hi, -hi][case] } else { r.below(2 * hi as u64 + 1) as i64 - hi };
            let w8: Vec<i8> = (0..nb * 32).map(|_| if case < 4 { [-8, -8, 7, -8][case] } else { pick(&mut r, 8).clamp(-8, 7) as i8 }).collect();
            let q: Vec<i8> = (0..nb * 32).map(|_| pick(&mut r, 127) as i8).collect();
            let d: Vec<i16> = (0..nb).map(|_| pick(&mut r, 8191) as i16).collect();
            let m: Vec<i16> = (0..nb).map(|_| pick(&mut r, 8191) as i16).collect();
            let a: Vec<u16> = (0..nb).map(|_| if case < 4 { 4096 } else { r.below(4097) as u16 }).collect();
            let sum: Vec<i32> = q.chunks(32).map(|c| c.iter().map(|&x| x as i32).sum()).collect();
            let ts: Vec<i128> = (0..nb).map(|b| d[b] as i128 * (0..32).map(|i| w8[32 * b + i] as i128 * q[32 * b + i] as i128).sum::<i128>() + m[b] as i128 * sum[b] as i128).collect();
            let nib: Vec<u8> = w8.chunks(32).flat_map(|b| (0..16).map(move |j| (b[j] + 8) as u8 | ((b[j + 16] + 8) as u8) << 4)).collect();
            for s in [-10, 0, 1, 17, 40] {
                assert_eq!(dot_q4(&nib, &d, &m, s, &q, &a, &sum, 0, 0), exact_dot(&ts, &a, s), "case {case} shift {s}");
            }
        }
    }

    #[test]
    fn dot_q8_matches_exact_sum_at_the_extremes() {
        let mut r = Rng(3);
        let nb = 32; // dim 1024: the largest the bound allows
        for case in 0..40 {
            let w: Vec<i8> = (0..nb * 32).map(|_| if case < 2 { -128 } else { r.next_u64() as i8 }).collect();
            let q: Vec<i8> = (0..nb * 32).map(|_| if case < 2 { [-127, 127][case] } else { (r.below(255) as i32 - 127) as i8 }).collect();
            let d: Vec<i16> = (0..nb).map(|_| if case < 2 { 2047 } else { (r.below(4095) as i32 - 2047) as i16 }).collect();
            let a: Vec<u16> = (0..nb).map(|_| if case < 2 { 4096 } else { r.below(4097) as u16 }).collect();
            let ts: Vec<i128> = (0..nb).map(|b| d[b] as i128 * (0..32).map(|i| w[32 * b + i] as i128 * q[32 * b + i] as i128).sum::<i128>()).collect();
            for s in [-3, 0, 30, 45] {
                assert_eq!(dot_q8(&w, &d, s, &q, &a, 0, 0), exact_dot(&ts, &a, s), "case {case} shift {s}");
            }
        }
    }

    #[test]
    fn rmsnorm_is_accurate_and_never_overflows() {
        let mut r = Rng(4);
        let g = NormWeight { g: (0..64).map(|i| 4096 + 100 * i).collect(), g_exp: 12, z_frac: 20 };
        for x in rows(&mut r, 64) {
            let mut z = vec![0; 64];
            rmsnorm_row(&x, &g, 168, &mut z);
            let xf: Vec<f64> = x.iter().map(|&v| v as f64 / 4096.0).collect();
            let rms = (xf.iter().map(|v| v * v).sum::<f64>() / 64.0 + 1e-5).sqrt();
            let want: Vec<f64> = (0..64).map(|i| xf[i] / rms * g.g[i] as f64 / 4096.0 * (1 << 20) as f64).collect();
            let zmax = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            for i in 0..64 {
                let want = want[i];
                // 2^-10 relative to the row's largest output (the pre-shifted sum of squares).
                let tol = 2.0 + zmax / 1024.0;
                assert!((z[i] as f64 - want).abs() <= tol, "x {} z {} want {want}", x[i], z[i]);
            }
        }
    }

    #[test]
    fn rope_silu_attention_saturate_instead_of_overflowing() {
        let mut r = Rng(5);
        let t = Tables { rope_cos: vec![16384, -16384, 11585, 0], rope_sin: vec![0, 16384, -11585, -16384], att_exp: crate::tables::exp2_table(8, 15), out_exp: vec![], silu: crate::tables::silu() };
        for mut x in rows(&mut r, 8) {
            let orig = x.clone();
            rope_row(&mut x, 4, 1, &t); // cos = -1, sin = -1/√2·… : just must not panic
            rope_row(&mut x, 4, 0, &t);
            let _ = orig;
            let mut out = vec![0; 8];
            silu_mul(&x, &x.iter().rev().copied().collect::<Vec<_>>(), &t.silu, &mut out);
        }
        // silu(0) = 0, silu(large) = g, silu(very negative) = 0, and the table midpoint.
        let mut o = vec![0; 4];
        silu_mul(&[0, 20 << 10, -(20 << 10), 1 << 10], &[1 << 10; 4], &t.silu, &mut o);
        assert_eq!(o, vec![0, 20 << 10, 0, 749]); // silu(1) = 0.7311 · 1024 = 748.6
        // Attention with the largest keys, values and a full 8192-position context.
        let cfg = Config { name: String::new(), n_layers: 1, dim: 64, hidden: 64, n_heads: 2, n_kv_heads: 1, head_dim: 32, vocab: 2, ctx: 8192, rope_base: 1e4, bos: 0, eos: 0, doc_start: 0, norm_eps_q24: 0 };
        let n = 8192;
        let cache = KvCache { k: (0..n * 32).map(|i| if i % 3 == 0 { 511 } else { -511 }).collect(), k_exp: (0..n).map(|i| (i % 24) as i32).collect(), v: (0..n * 32).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }).collect() };
        for q in [vec![i32::MAX; 64], vec![i32::MIN; 64], vec![0; 64], (0..64).map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN }).collect()] {
            let mut out = vec![0; 64];
            attention_row(&q, &cache, 0, n - 1, &cfg, &t.att_exp, &mut out, &mut Vec::new());
            assert!(out.iter().all(|&o| o.unsigned_abs() <= (1u32 << 30) + (1 << 27)));
        }
        // Uniform attention over equal keys averages the values exactly.
        let cache = KvCache { k: vec![0; 4 * 32], k_exp: vec![0; 4], v: (0..4 * 32).map(|i| ((i / 32) * 256) as i16).collect() };
        let mut out = vec![0; 64];
        attention_row(&vec![0; 64], &cache, 0, 3, &cfg, &t.att_exp, &mut out, &mut Vec::new());
        assert!(out.iter().all(|&o| o == 384 << 15), "{:?}", &out[..2]); // mean(0,1,2,3)·256 = 384 in Q8, p' = 2^13 each (Q0.15)
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
        let cfg = Config { name: String::new(), n_layers: 1, dim: 576, hidden: 64, n_heads: 9, n_kv_heads: 3, head_dim: 64, vocab: 2, ctx: 8192, rope_base: 1e4, bos: 0, eos: 0, doc_start: 0, norm_eps_q24: 0 };
        let kvd = 192;
        for (rows, extreme) in [(300, false), (40, true), (8192 + 3, false)] {
            let k: Vec<i16> = (0..rows * kvd).map(|i| if extreme { [511, -511, 0][i % 3] } else { (r.below(1023) as i32 - 511) as i16 }).collect();
            let v: Vec<i16> = (0..rows * kvd).map(|i| if extreme { [i16::MAX, i16::MIN][i % 2] } else { r.next_u64() as i16 }).collect();
            let k_exp: Vec<i32> = (0..rows * 3).map(|i| if extreme { (i % 24) as i32 } else { r.below(22) as i32 }).collect();
            let cache = KvCache { k, k_exp, v };
            let row = |r: &mut Rng, kind: usize| -> Vec<i32> {
                match kind % 5 {
                    0 => (0..576).map(|_| (r.next_u64() as i32) >> r.below(24)).collect(),
                    1 => vec![i32::MAX; 576],
                    2 => (0..576).map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN }).collect(),
                    3 => vec![0; 576],
                    _ => (0..576).map(|_| (r.below(2001) as i32 - 1000) << 10).collect(),
                }
            };
            // (base, positions of the tile's rows)
            let cases: Vec<(usize, Vec<u32>)> = if rows > 8192 {
                vec![(3, vec![8188, 8189, 8190, 8191]), (0, vec![2047]), (1, vec![0]), (0, vec![127, 128, 129, 255])]
            } else if rows > 40 {
                vec![(0, vec![0, 1, 2, 3]), (5, vec![126, 127, 128]), (17, vec![255, 256, 257, 258]), (0, vec![0])]
            } else {
                vec![(0, vec![0]), (0, vec![36, 37, 38, 39]), (5, vec![20, 21]), (39, vec![0]), (17, vec![22])]
            };
            for kind in 0..5 {
                for (base, pos) in &cases {
                    let q: Vec<i32> = (0..pos.len()).flat_map(|i| row(&mut r, kind + i)).collect();
                    let mut want = vec![0; q.len()];
                    for (i, &p) in pos.iter().enumerate() {
                        attention_row(&q[i * 576..(i + 1) * 576], &cache, *base, p as usize, &cfg, &exp, &mut want[i * 576..(i + 1) * 576], &mut Vec::new());
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
                                    attention_tile_with(isa, &q[span.clone()], hs, &[p], &cache, *base, &cfg, &exp, &mut got[span], &mut s);
                                }
                            }
                            assert_eq!(got, want, "{isa:?} split {split} base {base} pos {pos:?} extreme {extreme}");
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
        let cfg = Config { name: String::new(), n_layers: 1, dim: 576, hidden: 64, n_heads: 9, n_kv_heads: 3, head_dim: 64, vocab: 2, ctx: 8192, rope_base: 1e4, bos: 0, eos: 0, doc_start: 0, norm_eps_q24: 0 };
        let (kvd, rows) = (192, 8192 + 300);
        let cache = KvCache {
            k: (0..rows * kvd).map(|_| (r.below(1023) as i32 - 511) as i16).collect(),
            k_exp: (0..rows * 3).map(|_| r.below(22) as i32).collect(),
            v: (0..rows * kvd).map(|_| r.next_u64() as i16).collect(),
        };
        for (base, pos) in [(vec![0], vec![0u32]), (vec![300], vec![8191]), (vec![7, 0], vec![300, 2]), (vec![0, 8192, 9], vec![1000, 99, 129])] {
            let q: Vec<i32> = (0..pos.len() * 576).map(|i| if i % 577 == 0 { i32::MAX } else { (r.next_u64() as i32) >> r.below(24) }).collect();
            let mut want = vec![0; q.len()];
            for (i, &p) in pos.iter().enumerate() {
                attention_row(&q[i * 576..(i + 1) * 576], &cache, base[i], p as usize, &cfg, &exp, &mut want[i * 576..(i + 1) * 576], &mut Vec::new());
            }
            for isa in Isa::available() {
                for parts in 1..=5 {
                    assert_eq!(attention_split_with(isa, &q, &base, &pos, &cache, &cfg, &exp, parts), want, "{isa:?} parts {parts} pos {pos:?}");
                }
            }
        }
    }

    /// The engine's cut of a batch into attention tiles covers it in order, rows of one slot
    /// per tile; decoding rows spread over head groups.
    #[test]
    fn attention_tiles_cover_the_batch() {
        let slot: Vec<u32> = [0; 10].into_iter().chain([1; 7]).chain([0; 30]).collect();
        let t = attention_tiles(&slot, 9, 3, 2);
        assert!(t.iter().all(|t| t.heads == (0..9) && t.rows.len() <= ROW_TILE && t.rows.clone().all(|r| slot[r] == slot[t.rows.start])));
        assert_eq!(t.iter().flat_map(|t| t.rows.clone()).collect::<Vec<_>>(), (0..slot.len()).collect::<Vec<_>>());
        // Decoding: a key head's group per tile with enough rows, else one head per tile.
        let t = attention_tiles(&[0, 1, 2, 3], 9, 3, 2);
        assert_eq!(t.len(), 12);
        assert_eq!(t[4], Tile { rows: 1..2, heads: 3..6 });
        let t = attention_tiles(&[0], 9, 3, 2);
        assert_eq!(t, (0..9).map(|h| Tile { rows: 0..1, heads: h..h + 1 }).collect::<Vec<_>>());
    }
}
