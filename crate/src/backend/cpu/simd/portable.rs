//! [`Isa::Portable`](super::Isa::Portable): plain Rust on fixed-size arrays that LLVM vectorises for the
//! target's baseline (SSE2, NEON, SIMD128); runs where no other implementation does.

use super::{finish, p_norm, recip, CpuQ4, CpuQ8, QAct, GROUP};
use crate::wide::round_shift_sat_i64;

/// Tokens `t0..t0+N` of Q4 group `g`. Per block and token, lane `4i + e` of `s` sums row
/// `i`'s products for elements `≡ e (mod 4)`, in i16: a step adds `lo·q + hi·q'` ≤
/// 2·15·127 per lane, four steps ≤ 15,240 < 2^15. Then `S_i` = Σ of its 4 lanes,
/// `T = d·(S − 8X) + m·X` (|T| < 2^29) and `Σ T·a` in i64.
#[inline(always)]
pub fn group_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut acc = [[0i64; GROUP]; N];
    for b in 0..nb {
        let blk = &w.w[(g * nb + b) * 128..(g * nb + b + 1) * 128];
        let mut s = [[0i16; 32]; N];
        for p in 0..4 {
            let wp = &blk[32 * p..32 * p + 32];
            let lo: [i16; 32] = std::array::from_fn(|l| (wp[l] & 15) as i16);
            let hi: [i16; 32] = std::array::from_fn(|l| (wp[l] >> 4) as i16);
            for (k, sk) in s.iter_mut().enumerate() {
                let q = &x.q[(t0 + k) * cols + 32 * b + 8 * p..(t0 + k) * cols + 32 * b + 8 * p + 8];
                let ql: [i16; 32] = std::array::from_fn(|l| q[l & 3] as i16);
                let qh: [i16; 32] = std::array::from_fn(|l| q[4 + (l & 3)] as i16);
                for l in 0..32 {
                    sk[l] += lo[l] * ql[l] + hi[l] * qh[l];
                }
            }
        }
        let (d, m) = (
            &w.d[(g * nb + b) * GROUP..(g * nb + b + 1) * GROUP],
            &w.m[(g * nb + b) * GROUP..(g * nb + b + 1) * GROUP],
        );
        for (k, (sk, ak)) in s.iter().zip(acc.iter_mut()).enumerate() {
            let t = t0 + k;
            let (xs, a) = (x.sum[t * nb + b], x.a[t * nb + b] as i64);
            for i in 0..GROUP {
                let si = sk[4 * i] as i32 + sk[4 * i + 1] as i32 + sk[4 * i + 2] as i32 + sk[4 * i + 3] as i32;
                let ti = d[i] as i32 * (si - 8 * xs) + m[i] as i32 * xs;
                ak[i] += ti as i64 * a;
            }
        }
    }
    for (k, ak) in acc.iter().enumerate() {
        finish(
            ak,
            &w.e[g * GROUP..(g + 1) * GROUP],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// Tokens `t0..t0+N` of Q8 group `g`: lane `4i + e` of `s` sums row `i`'s products for
/// elements `≡ e (mod 4)`, two steps at a time in i16 (|w·q| ≤ 128·127, two ≤ 32,512 <
/// 2^15: every target multiplies i16 lanes natively), then in i32; `T = d·S` (|T| < 2^30).
#[inline(always)]
pub fn group_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut acc = [[0i64; GROUP]; N];
    for b in 0..nb {
        let blk = &w.q[(g * nb + b) * 256..(g * nb + b + 1) * 256];
        let mut s = [[0i32; 32]; N];
        for st in (0..8).step_by(2) {
            let w0: [i16; 32] = std::array::from_fn(|l| blk[32 * st + l] as i16);
            let w1: [i16; 32] = std::array::from_fn(|l| blk[32 * st + 32 + l] as i16);
            for (k, sk) in s.iter_mut().enumerate() {
                let q = &x.q[(t0 + k) * cols + 32 * b + 4 * st..(t0 + k) * cols + 32 * b + 4 * st + 8];
                let q0: [i16; 32] = std::array::from_fn(|l| q[l & 3] as i16);
                let q1: [i16; 32] = std::array::from_fn(|l| q[4 + (l & 3)] as i16);
                for l in 0..32 {
                    sk[l] += (w0[l] * q0[l] + w1[l] * q1[l]) as i32;
                }
            }
        }
        let d = &w.d[(g * nb + b) * GROUP..(g * nb + b + 1) * GROUP];
        for (k, (sk, ak)) in s.iter().zip(acc.iter_mut()).enumerate() {
            let a = x.a[(t0 + k) * nb + b] as i64;
            for i in 0..GROUP {
                let si = sk[4 * i] + sk[4 * i + 1] + sk[4 * i + 2] + sk[4 * i + 3];
                ak[i] += (d[i] as i32 * si) as i64 * a;
            }
        }
    }
    for (k, ak) in acc.iter().enumerate() {
        finish(
            ak,
            &w.e[g * GROUP..(g + 1) * GROUP],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// See [`super::head_scores`]: |q·k| ≤ hd·511·511 < 2^24 for hd ≤ 64 (i32; the oracle
/// allows any head dim ≤ 256: < 2^26).
#[allow(clippy::too_many_arguments)]
pub fn head_scores(
    qi: &[i16],
    k: &[i16],
    k_exp: &[i32],
    kvd: usize,
    n_kv: usize,
    kvh: usize,
    shift0: i32,
    scores: &mut [i32],
) -> i32 {
    let hd = qi.len();
    let mut tmax = i32::MIN;
    for (j, sc) in scores.iter_mut().enumerate() {
        let kj = &k[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
        let mut dot = 0i32;
        for i in 0..hd {
            dot += qi[i] as i32 * kj[i] as i32;
        }
        let t = round_shift_sat_i64(dot as i64, shift0 - k_exp[j * n_kv + kvh]);
        *sc = t;
        tmax = tmax.max(t);
    }
    tmax
}

/// See [`super::head_probs`].
pub fn head_probs(scores: &[i32], tmax: i32, exp_q15: &[u32], probs: &mut [u32]) -> u32 {
    let mut sum = 0u32;
    for (p, &t) in probs.iter_mut().zip(scores) {
        let d = tmax.wrapping_sub(t) as u32; // exact: t ≤ tmax
        let k = d >> 8;
        *p = if k >= 16 { 0 } else { exp_q15[(d & 255) as usize] >> k };
        sum += *p;
    }
    sum
}

/// See [`super::head_values`]: every partial sum of `Σ pn·v` is bounded by
/// `Σ pn · 2^15 ≤ (2^15 + ctx/2)·2^15 < 2^31`.
pub fn head_values(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
    let hd = out.len();
    let inv = recip(sum);
    for (j, &pj) in p.iter().enumerate() {
        if pj == 0 {
            continue;
        }
        let pn = p_norm(pj, sum, inv) as i32;
        let vj = &v[j * kvd + off..j * kvd + off + hd];
        for (o, &x) in out.iter_mut().zip(vj) {
            *o += pn * x as i32;
        }
    }
}
