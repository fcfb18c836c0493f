//! wasm32 SIMD128 and relaxed SIMD: [`Isa::Simd128`](super::Isa::Simd128) and
//! [`Isa::RelaxedSimd`](super::Isa::RelaxedSimd) (see the module docs of [`super`]).

use super::{finish, p_norm, recip, CpuQ4, CpuQ8, QAct, GROUP};
use crate::wide::round_shift_sat_i64;
use core::arch::wasm32::*;

#[inline(always)]
unsafe fn load<T>(p: *const T) -> v128 {
    v128_load(p as *const v128)
}

/// Four activation bytes at `q`, widened to i16 and repeated: `[q0..q3, q0..q3]`.
#[inline(always)]
unsafe fn splat4(q: *const i8) -> v128 {
    i16x8_extend_low_i8x16(v128_load32_splat(q as *const u32))
}

/// Two vectors of `(row r: e01, r: e23, r+1: e01, r+1: e23)` pair sums → the four rows'
/// block dots `[S_r, S_r+1, S_r+2, S_r+3]`.
#[inline(always)]
fn rows4(a: v128, b: v128) -> v128 {
    i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(a, b), i32x4_shuffle::<1, 3, 5, 7>(a, b))
}

/// Adds `T·a` (T: rows `4h..4h+4`) to f64 accumulators of rows `4h, 4h+1` / `4h+2, 4h+3`:
/// exact, as every product (|T·a| < 2^42) and every partial sum of a row (< 2^11 blocks,
/// `check_q4`/`check_q8`: < 2^53) is an integer an f64 holds; cheaper than i64 multiplies.
#[inline(always)]
fn add_ta(acc: &mut [v128; 4], h: usize, t: v128, a: v128) {
    acc[2 * h] = madd(f64x2_convert_low_i32x4(t), a, acc[2 * h]);
    acc[2 * h + 1] = madd(
        f64x2_convert_low_i32x4(i32x4_shuffle::<2, 3, 2, 3>(t, t)),
        a,
        acc[2 * h + 1],
    );
}

/// `a·b + c` on f64 lanes: one fused instruction where relaxed SIMD is on (the engine may
/// fuse or not; exact either way on the integers `add_ta` passes).
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return f64x2_relaxed_madd(a, b, c);
    #[cfg(not(target_feature = "relaxed-simd"))]
    return f64x2_add(f64x2_mul(a, b), c);
}

#[inline(always)]
fn lanes(acc: &[v128; 4]) -> [i64; GROUP] {
    let l = |v: v128| [f64x2_extract_lane::<0>(v) as i64, f64x2_extract_lane::<1>(v) as i64];
    let [a, b, c, d] = [l(acc[0]), l(acc[1]), l(acc[2]), l(acc[3])];
    [a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]]
}

/// Adds block `b`'s `T·a` of tokens `t0..t0+N` to their accumulators, from each token's
/// Q4 block dots `S` (`[rows 0–3, rows 4–7]`): `T = d·(S − 8X) + m·X`.
#[inline(always)]
unsafe fn q4_block<const N: usize>(
    w: &CpuQ4,
    g: usize,
    b: usize,
    x: &QAct,
    t0: usize,
    s: [[v128; 2]; N],
    acc: &mut [[v128; 4]; N],
) {
    let nb = w.cols / 32;
    let d = scales(w.d.as_ptr().add((g * nb + b) * GROUP));
    let m = scales(w.m.as_ptr().add((g * nb + b) * GROUP));
    for (k, (sk, ak)) in s.iter().zip(acc.iter_mut()).enumerate() {
        let t = t0 + k;
        let xs = i32x4_splat(*x.sum.get_unchecked(t * nb + b));
        let av = f64x2_splat(*x.a.get_unchecked(t * nb + b) as f64);
        for h in 0..2 {
            let s1 = i32x4_sub(sk[h], i32x4_shl(xs, 3)); // S' = S − 8X
            let tv = i32x4_add(i32x4_mul(d[h], s1), i32x4_mul(m[h], xs));
            add_ta(ak, h, tv, av);
        }
    }
}

/// Writes the outputs of tokens `t0..t0+N` of group `g` from their accumulators.
#[inline(always)]
fn finish_group<const N: usize>(
    acc: &[[v128; 4]; N],
    e: &[i8],
    g: usize,
    x: &QAct,
    frac_out: i32,
    o: &mut [i32],
    t0: usize,
) {
    for (k, ak) in acc.iter().enumerate() {
        finish(
            &lanes(ak),
            &e[g * GROUP..(g + 1) * GROUP],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// Block scales `[rows 0..4]`, `[rows 4..8]` as i32 lanes.
#[inline(always)]
unsafe fn scales(p: *const i16) -> [v128; 2] {
    let v = load(p);
    [i32x4_extend_low_i16x8(v), i32x4_extend_high_i16x8(v)]
}

/// Tokens `t0..t0+N` of Q4 group `g` (see [`super::group_q4`]). A 32-byte step (4
/// weights of each of the 8 rows) widens to four i16x8 (rows 0–1, 2–3, 4–5, 6–7; nibbles
/// ≤ 15); `dot_i16x8` with the token's 4 activations splatted gives pair sums ≤ 2·15·127,
/// accumulated per block in i32 lanes; `T = d·(S − 8X) + m·X` (|T| < 2^29), `T·a` < 2^42.
pub unsafe fn group_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let m4 = u8x16_splat(15);
    let mut acc = [[f64x2_splat(0.0); 4]; N];
    for b in 0..nb {
        let wp = w.w.as_ptr().add((g * nb + b) * 128);
        let mut s = [[i32x4_splat(0); 4]; N];
        for p in 0..4 {
            let r = [load(wp.add(32 * p)), load(wp.add(32 * p + 16))];
            let lo = [v128_and(r[0], m4), v128_and(r[1], m4)];
            let hi = [u8x16_shr(r[0], 4), u8x16_shr(r[1], 4)];
            let wl = [
                u16x8_extend_low_u8x16(lo[0]),
                u16x8_extend_high_u8x16(lo[0]),
                u16x8_extend_low_u8x16(lo[1]),
                u16x8_extend_high_u8x16(lo[1]),
            ];
            let wh = [
                u16x8_extend_low_u8x16(hi[0]),
                u16x8_extend_high_u8x16(hi[0]),
                u16x8_extend_low_u8x16(hi[1]),
                u16x8_extend_high_u8x16(hi[1]),
            ];
            for (k, sk) in s.iter_mut().enumerate() {
                let q = x.q.as_ptr().add((t0 + k) * cols + 32 * b + 8 * p);
                let (ql, qh) = (splat4(q), splat4(q.add(4)));
                for j in 0..4 {
                    sk[j] = i32x4_add(sk[j], i32x4_add(i32x4_dot_i16x8(wl[j], ql), i32x4_dot_i16x8(wh[j], qh)));
                }
            }
        }
        q4_block(
            w,
            g,
            b,
            x,
            t0,
            s.map(|sk| [rows4(sk[0], sk[1]), rows4(sk[2], sk[3])]),
            &mut acc,
        );
    }
    finish_group(&acc, &w.e, g, x, frac_out, o, t0);
}

/// Tokens `t0..t0+N` of Q8 group `g`: as [`group_q4`] with signed bytes widened
/// (pair sums ≤ 2·128·127, block dots |S| < 2^19 in i32); `T = d·S` (|T| < 2^30).
pub unsafe fn group_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut acc = [[f64x2_splat(0.0); 4]; N];
    for b in 0..nb {
        let wp = w.q.as_ptr().add((g * nb + b) * 256);
        let mut s = [[i32x4_splat(0); 4]; N];
        for st in 0..8 {
            let r = [load(wp.add(32 * st)), load(wp.add(32 * st + 16))];
            let wv = [
                i16x8_extend_low_i8x16(r[0]),
                i16x8_extend_high_i8x16(r[0]),
                i16x8_extend_low_i8x16(r[1]),
                i16x8_extend_high_i8x16(r[1]),
            ];
            for (k, sk) in s.iter_mut().enumerate() {
                let qv = splat4(x.q.as_ptr().add((t0 + k) * cols + 32 * b + 4 * st));
                for j in 0..4 {
                    sk[j] = i32x4_add(sk[j], i32x4_dot_i16x8(wv[j], qv));
                }
            }
        }
        let d = scales(w.d.as_ptr().add((g * nb + b) * GROUP));
        for (k, (sk, ak)) in s.iter().zip(acc.iter_mut()).enumerate() {
            let av = f64x2_splat(*x.a.get_unchecked((t0 + k) * nb + b) as f64);
            for h in 0..2 {
                add_ta(ak, h, i32x4_mul(d[h], rows4(sk[2 * h], sk[2 * h + 1])), av);
            }
        }
    }
    finish_group(&acc, &w.e, g, x, frac_out, o, t0);
}

/// Tokens `t0..t0+N` of Q4 group `g` with relaxed SIMD: each 16-byte half of a 32-byte
/// step holds 4 weights of 4 rows, so `relaxed_dot(activations, nibbles)` with the
/// token's 4 activations splatted adds each row's 4 products to its own lane (no
/// widening, no shuffles). The nibbles (0–15) are the operand the instruction needs in
/// 0–127 for an exact, engine-independent result; sums as in [`group_q4`].
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn relaxed_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let m4 = u8x16_splat(15);
    let mut acc = [[f64x2_splat(0.0); 4]; N];
    for b in 0..nb {
        let wp = w.w.as_ptr().add((g * nb + b) * 128);
        // [rows 0–3, rows 4–7]
        let mut s = [[i32x4_splat(0); 2]; N];
        for p in 0..4 {
            let r = [load(wp.add(32 * p)), load(wp.add(32 * p + 16))];
            let nib = [
                v128_and(r[0], m4),
                v128_and(r[1], m4),
                u8x16_shr(r[0], 4),
                u8x16_shr(r[1], 4),
            ];
            for (k, sk) in s.iter_mut().enumerate() {
                let q = x.q.as_ptr().add((t0 + k) * cols + 32 * b + 8 * p);
                let (ql, qh) = (
                    v128_load32_splat(q as *const u32),
                    v128_load32_splat(q.add(4) as *const u32),
                );
                sk[0] = i32x4_relaxed_dot_i8x16_i7x16_add(ql, nib[0], sk[0]);
                sk[1] = i32x4_relaxed_dot_i8x16_i7x16_add(ql, nib[1], sk[1]);
                sk[0] = i32x4_relaxed_dot_i8x16_i7x16_add(qh, nib[2], sk[0]);
                sk[1] = i32x4_relaxed_dot_i8x16_i7x16_add(qh, nib[3], sk[1]);
            }
        }
        q4_block(w, g, b, x, t0, s, &mut acc);
    }
    finish_group(&acc, &w.e, g, x, frac_out, o, t0);
}

/// Tokens `t0..t0+N` of Q8 group `g` with relaxed SIMD. The 8-bit dot needs one operand
/// in 0–127 for an exact result; signed weights and activations are neither, so the
/// activations are split once per block: `x + 128 = 16·xh + xl` (nibbles), and
/// `S = 16·Σ w·xh + Σ w·xl − 128·Σw` (Σw per row and block from the layout, `CpuQ8::ws`;
/// |S| < 2^19). The weights are used as stored, nothing to unpack; `T = d·S` as in
/// [`group_q8`].
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn relaxed_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let (m4, bias) = (u8x16_splat(15), u8x16_splat(0x80));
    let mut acc = [[f64x2_splat(0.0); 4]; N];
    // Per token: the block's activation nibbles, [xl 0–15, xl 16–31, xh 0–15, xh 16–31].
    let mut xn = [[u8x16_splat(0); 4]; N];
    for b in 0..nb {
        let wp = w.q.as_ptr().add((g * nb + b) * 256);
        for (k, xk) in xn.iter_mut().enumerate() {
            let q = x.q.as_ptr().add((t0 + k) * cols + 32 * b);
            let u = [v128_xor(load(q), bias), v128_xor(load(q.add(16)), bias)];
            *xk = [
                v128_and(u[0], m4),
                v128_and(u[1], m4),
                u8x16_shr(u[0], 4),
                u8x16_shr(u[1], 4),
            ];
        }
        // [rows 0–3 low nibbles, rows 4–7 low, rows 0–3 high, rows 4–7 high]
        let mut s = [[i32x4_splat(0); 4]; N];
        for st in 0..8 {
            let r = [load(wp.add(32 * st)), load(wp.add(32 * st + 16))];
            for (k, sk) in s.iter_mut().enumerate() {
                let xp = xn[k].as_ptr() as *const u8;
                let xl = v128_load32_splat(xp.add(16 * (st / 4) + 4 * (st % 4)) as *const u32);
                let xh = v128_load32_splat(xp.add(32 + 16 * (st / 4) + 4 * (st % 4)) as *const u32);
                sk[0] = i32x4_relaxed_dot_i8x16_i7x16_add(r[0], xl, sk[0]);
                sk[1] = i32x4_relaxed_dot_i8x16_i7x16_add(r[1], xl, sk[1]);
                sk[2] = i32x4_relaxed_dot_i8x16_i7x16_add(r[0], xh, sk[2]);
                sk[3] = i32x4_relaxed_dot_i8x16_i7x16_add(r[1], xh, sk[3]);
            }
        }
        let d = scales(w.d.as_ptr().add((g * nb + b) * GROUP));
        let ws = scales(w.ws.as_ptr().add((g * nb + b) * GROUP));
        for (k, (sk, ak)) in s.iter().zip(acc.iter_mut()).enumerate() {
            let av = f64x2_splat(*x.a.get_unchecked((t0 + k) * nb + b) as f64);
            for h in 0..2 {
                let sv = i32x4_sub(i32x4_add(i32x4_shl(sk[h + 2], 4), sk[h]), i32x4_shl(ws[h], 7));
                add_ta(ak, h, i32x4_mul(d[h], sv), av);
            }
        }
    }
    finish_group(&acc, &w.e, g, x, frac_out, o, t0);
}

/// Sum of the four lanes of each of `v[0..4]` → `[Σv0, Σv1, Σv2, Σv3]`.
#[inline(always)]
fn hsum4(v: [v128; 4]) -> v128 {
    let a = i32x4_add(
        i32x4_shuffle::<0, 4, 2, 6>(v[0], v[1]),
        i32x4_shuffle::<1, 5, 3, 7>(v[0], v[1]),
    ); // (Σ01 v0, Σ01 v1, Σ23 v0, Σ23 v1)
    let b = i32x4_add(
        i32x4_shuffle::<0, 4, 2, 6>(v[2], v[3]),
        i32x4_shuffle::<1, 5, 3, 7>(v[2], v[3]),
    );
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
}

/// See [`super::head_scores`] (head dim 64): eight `dot_i16x8` per key (|q·k| < 2^24,
/// pair sums < 2^19), four keys reduced together, the per-key rounding shift in scalar
/// (SIMD128 shifts one amount per vector).
#[allow(clippy::too_many_arguments)]
pub unsafe fn head_scores(
    qi: &[i16],
    k: &[i16],
    k_exp: &[i32],
    kvd: usize,
    n_kv: usize,
    kvh: usize,
    shift0: i32,
    scores: &mut [i32],
) -> i32 {
    let n = scores.len();
    let q: [v128; 8] = std::array::from_fn(|c| load(qi.as_ptr().add(8 * c)));
    let kp = k.as_ptr().add(kvh * 64);
    let dot = |j: usize| {
        let r = kp.add(j * kvd);
        let m = |c: usize| i32x4_dot_i16x8(q[c], load(r.add(8 * c)));
        i32x4_add(
            i32x4_add(i32x4_add(m(0), m(1)), i32x4_add(m(2), m(3))),
            i32x4_add(i32x4_add(m(4), m(5)), i32x4_add(m(6), m(7))),
        )
    };
    let mut tmax = i32::MIN;
    let mut j = 0;
    while j + 4 <= n {
        let t = hsum4([dot(j), dot(j + 1), dot(j + 2), dot(j + 3)]);
        let ts = [
            i32x4_extract_lane::<0>(t),
            i32x4_extract_lane::<1>(t),
            i32x4_extract_lane::<2>(t),
            i32x4_extract_lane::<3>(t),
        ];
        for (i, &ti) in ts.iter().enumerate() {
            let r = round_shift_sat_i64(ti as i64, shift0 - k_exp[(j + i) * n_kv + kvh]);
            scores[j + i] = r;
            tmax = tmax.max(r);
        }
        j += 4;
    }
    while j < n {
        let t = hsum4([dot(j), i32x4_splat(0), i32x4_splat(0), i32x4_splat(0)]);
        let r = round_shift_sat_i64(i32x4_extract_lane::<0>(t) as i64, shift0 - k_exp[j * n_kv + kvh]);
        scores[j] = r;
        tmax = tmax.max(r);
        j += 1;
    }
    tmax
}

/// See [`super::head_values`] (head dim 64): keys in pairs, `dot_i16x8` of the two keys'
/// values interleaved with `(pn_j, pn_j+1)` (each ≤ 32767; a `pn` of 2^15 is split as
/// 32767 + 1 in a second pass). Products ≤ 2·32767·2^15 < 2^31, and every partial sum is
/// bounded by `Σ pn · 2^15 < 2^31`, so the sums are exact in any order.
pub unsafe fn head_values(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
    let inv = recip(sum);
    let mut acc: [v128; 16] = std::array::from_fn(|c| load(out.as_ptr().add(4 * c)));
    let vp = v.as_ptr().add(off);
    let n = p.len();
    let mut j = 0;
    while j < n {
        let (a, b) = (
            p_norm(p[j], sum, inv),
            if j + 1 < n { p_norm(p[j + 1], sum, inv) } else { 0 },
        );
        if a == 0 && b == 0 {
            j += 2;
            continue;
        }
        let ra = vp.add(j * kvd);
        let rb = if j + 1 < n { vp.add((j + 1) * kvd) } else { ra };
        for w in super::pair_words(a, b) {
            if w == 0 {
                continue;
            }
            let w = i32x4_splat(w);
            for c in 0..8 {
                let (va, vb) = (load(ra.add(8 * c)), load(rb.add(8 * c)));
                // (a0 b0 a1 b1 a2 b2 a3 b3), (a4 b4 … a7 b7)
                let lo = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(va, vb);
                let hi = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(va, vb);
                acc[2 * c] = i32x4_add(acc[2 * c], i32x4_dot_i16x8(lo, w));
                acc[2 * c + 1] = i32x4_add(acc[2 * c + 1], i32x4_dot_i16x8(hi, w));
            }
        }
        j += 2;
    }
    for (c, a) in acc.iter().enumerate() {
        v128_store(out.as_mut_ptr().add(4 * c) as *mut v128, *a);
    }
}
