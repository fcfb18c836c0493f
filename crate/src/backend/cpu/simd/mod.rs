//! The CPU engine's hot loops, one implementation per instruction set, chosen per call.
//!
//! Matmul (`group_q4`, `group_q8`): one group of 8 rows in the engine's interleaved layout
//! (see [`super::CpuQ4`]), one lane per row, so nothing is summed horizontally across the
//! block. Every implementation computes the same integers as [`super::dot_q4`] /
//! [`super::dot_q8`]: per block the exact block dot `S` of each row, the block term `T`
//! (|T| < 2^30), the exact sum `Σ T_b·a_b` in 64 bits, then one rounding shift — so the bits
//! are identical (tested in `tests.rs` on random and extreme inputs, on every [`Isa`] this machine
//! runs, and on wasm32 under Node). Up to four tokens (two on SIMD128) share each weight load (`N` = 1–4).
//!
//! - [`Isa::Avx2`] (x86-64, detected at run time): `maddubs`/`madd` on 32-byte weight steps.
//! - [`Isa::AvxVnni`] (x86-64 with AVX-VNNI, detected at run time): as AVX2, with each
//!   step's `maddubs` + adds fused into one `vpdpbusd` (u8 × i8, four products into an i32
//!   lane), so a block's dot sums in i32 and is scaled once per block. Attention as AVX2.
//! - [`Isa::Simd128`] (wasm32 built with `+simd128`, `.cargo/config.toml`): weights widened
//!   to i16 once per block and shared by the tokens, `i32x4.dot_i16x8_s` against the token's
//!   4 activations splatted, `Σ T·a` in f64 lanes (exact: integers below 2^53).
//! - [`Isa::RelaxedSimd`] (wasm32 built with `+simd128,+relaxed-simd`: the web package's
//!   second build, picked by feature detection): as SIMD128, with each 16-byte step's
//!   products summed four at a time by `i32x4.relaxed_dot_i8x16_i7x16_add_s`. Relaxed SIMD
//!   leaves its result to the engine only when the second operand has a byte ≥ 128; here it
//!   is always a nibble (0–15): Q4 weights, or for Q8 the activations split as
//!   `x + 128 = 16·xh + xl`, so every engine computes the same exact sums. Attention runs
//!   the SIMD128 loops.
//! - [`Isa::Portable`]: plain Rust on fixed-size arrays that LLVM vectorises for the target's
//!   baseline (SSE2, NEON, SIMD128); runs where neither of the above does.
//!
//! Attention (`head_scores`, `head_values`): the AVX2 and SIMD128 versions of the two loops of
//! [`super::attention_tile_with`], with the portable loops as the fallback.

use super::{CpuQ4, CpuQ8, QAct, GROUP};
use crate::wide::round_shift_sat_i64;

// --- choosing an implementation ---

/// An implementation of the hot loops. All give the same bits; they differ in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, vectorised by LLVM for the target's baseline. Runs everywhere.
    Portable,
    /// x86-64 AVX2, when the CPU has it (run-time detection).
    Avx2,
    /// x86-64 AVX2 with AVX-VNNI (`vpdpbusd` on 256-bit vectors: Alder Lake, Sapphire
    /// Rapids, Zen 5 and later), when the CPU has both (run-time detection).
    AvxVnni,
    /// x86-64 AVX-512 with VNNI (Ice Lake server, Sapphire Rapids, Zen 4 and later), when
    /// the CPU has AVX-512 F, BW and VNNI (run-time detection): the matmuls take two 8-row
    /// groups per 512-bit vector (`vpdpbusd` on zmm, 16 rows per block scaling), attention
    /// 32 16-bit elements per `vpdpwssd`.
    Avx512Vnni,
    /// wasm32 SIMD128, when the module was built with it (compile time; every evergreen
    /// browser and Node ≥ 16.4 run it).
    Simd128,
    /// wasm32 SIMD128 with relaxed SIMD's 8-bit dot product, when the module was built with
    /// `+relaxed-simd` (compile time; Chromium-based browsers from 114 run it; Node 20 does not:
    /// its experimental flag implements an older draft of the instruction).
    RelaxedSimd,
}

impl Isa {
    /// Whether this machine (or this build, for SIMD128) can run it.
    pub fn runs(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
            Isa::RelaxedSimd => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest one that runs here: what the engine uses.
    pub fn best() -> Isa {
        [Isa::Avx512Vnni, Isa::AvxVnni, Isa::Avx2, Isa::RelaxedSimd, Isa::Simd128]
            .into_iter()
            .find(|i| i.runs())
            .unwrap_or(Isa::Portable)
    }

    /// Every one that runs here (parity tests and benchmarks compare them).
    pub fn available() -> Vec<Isa> {
        [
            Isa::Portable,
            Isa::Avx2,
            Isa::AvxVnni,
            Isa::Avx512Vnni,
            Isa::Simd128,
            Isa::RelaxedSimd,
        ]
        .into_iter()
        .filter(|i| i.runs())
        .collect()
    }
}

/// Calls `$kernel::<N>(…, t0)` over the tokens of `$x` in runs of 4, then the 1–3 left.
macro_rules! by_fours {
    ($x:expr, |$t:ident| $kernel:ident::<N>($($arg:expr),*)) => {{
        let mut $t = 0;
        while $t + 4 <= $x.tokens {
            $kernel::<4>($($arg),*);
            $t += 4;
        }
        match $x.tokens - $t {
            3 => $kernel::<3>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            1 => $kernel::<1>($($arg),*),
            _ => {}
        }
    }};
}

/// As `by_fours`, in runs of 2 (then 1): for SIMD128, whose 4-token kernels keep more
/// vectors live than V8 has registers (x86-64: 16) and run slower per token than runs of 2.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
macro_rules! by_twos {
    ($x:expr, |$t:ident| $kernel:ident::<N>($($arg:expr),*)) => {{
        let mut $t = 0;
        while $t + 2 <= $x.tokens {
            $kernel::<2>($($arg),*);
            $t += 2;
        }
        if $t < $x.tokens {
            $kernel::<1>($($arg),*);
        }
    }};
}

fn check_q4(w: &CpuQ4, g: usize, x: &QAct, o: &[i32]) {
    let nb = w.cols / 32;
    assert!(nb < 1 << 11, "wider than the kernels' exact sums allow");
    assert!(
        w.cols.is_multiple_of(32)
            && x.width == w.cols
            && w.w.len() >= (g + 1) * nb * 128
            && w.d.len() >= (g + 1) * nb * GROUP
            && w.m.len() >= (g + 1) * nb * GROUP
            && w.e.len() >= (g + 1) * GROUP
    );
    assert!(
        x.q.len() >= x.tokens * x.width
            && x.a.len() >= x.tokens * nb
            && x.sum.len() >= x.tokens * nb
            && x.exp.len() >= x.tokens
            && o.len() >= GROUP * x.tokens
    );
}

fn check_q8(w: &CpuQ8, g: usize, x: &QAct, o: &[i32]) {
    let nb = w.cols / 32;
    assert!(nb < 1 << 11, "wider than the kernels' exact sums allow");
    assert!(
        w.cols.is_multiple_of(32)
            && x.width == w.cols
            && w.q.len() >= (g + 1) * nb * 256
            && w.d.len() >= (g + 1) * nb * GROUP
            && w.e.len() >= (g + 1) * GROUP
    );
    assert!(
        x.q.len() >= x.tokens * x.width
            && x.a.len() >= x.tokens * nb
            && x.exp.len() >= x.tokens
            && o.len() >= GROUP * x.tokens
    );
}

/// Q4: rows `8g..8g+8` for every token into `o` (`[8, tokens]`) with `isa`, which must run
/// here ([`Isa::runs`]; a panic otherwise).
pub fn group_q4(isa: Isa, w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32]) {
    assert!(isa.runs(), "{isa:?} does not run on this machine");
    check_q4(w, g, x, o);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present (`runs`, asserted above); the shapes are checked by `check_q4`.
        Isa::Avx2 => unsafe { by_fours!(x, |t| avx2_q4::<N>(w, g, x, frac_out, o, t)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present (`Avx512Vnni` requires it: `runs`), AVX-VNNI is checked
        // before its kernel runs; shapes as above. (`Avx512Vnni` takes one group at a time
        // below `PAIR_MIN_TOKENS` tokens, or the last group of an odd number: `groups_q4`.)
        Isa::Avx512Vnni => unsafe {
            if Isa::AvxVnni.runs() {
                by_fours!(x, |t| vnni_q4::<N>(w, g, x, frac_out, o, t))
            } else {
                by_fours!(x, |t| avx2_q4::<N>(w, g, x, frac_out, o, t))
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and AVX-VNNI are present (`runs`); the shapes are checked by `check_q4`.
        Isa::AvxVnni => unsafe { by_fours!(x, |t| vnni_q4::<N>(w, g, x, frac_out, o, t)) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: the shapes are checked by `check_q4` (the loads stay inside them).
        Isa::Simd128 => unsafe { by_twos!(x, |t| simd128_q4::<N>(w, g, x, frac_out, o, t)) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
        // SAFETY: as for SIMD128. One token per call (decoding one stream): the SIMD128 kernel,
        // which decoded 10–25 % faster in Chromium than the relaxed one (BENCHMARKS.md,
        // session 13), though slower in cache; from 2 tokens the relaxed kernel.
        Isa::RelaxedSimd if x.tokens == 1 => unsafe { simd128_q4::<1>(w, g, x, frac_out, o, 0) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
        // SAFETY: as for SIMD128.
        Isa::RelaxedSimd => unsafe { by_fours!(x, |t| relaxed_q4::<N>(w, g, x, frac_out, o, t)) },
        _ => by_fours!(x, |t| portable_q4::<N>(w, g, x, frac_out, o, t)),
    }
}

/// Q8: rows `8g..8g+8` for every token into `o` (`[8, tokens]`) with `isa` (as [`group_q4`]).
pub fn group_q8(isa: Isa, w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32]) {
    assert!(isa.runs(), "{isa:?} does not run on this machine");
    check_q8(w, g, x, o);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `group_q4`.
        Isa::Avx2 => unsafe { by_fours!(x, |t| avx2_q8::<N>(w, g, x, frac_out, o, t)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `group_q4`.
        Isa::Avx512Vnni => unsafe {
            if Isa::AvxVnni.runs() {
                by_fours!(x, |t| vnni_q8::<N>(w, g, x, frac_out, o, t))
            } else {
                by_fours!(x, |t| avx2_q8::<N>(w, g, x, frac_out, o, t))
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `group_q4`.
        Isa::AvxVnni => unsafe { by_fours!(x, |t| vnni_q8::<N>(w, g, x, frac_out, o, t)) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: as in `group_q4`.
        Isa::Simd128 => unsafe { by_twos!(x, |t| simd128_q8::<N>(w, g, x, frac_out, o, t)) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
        // SAFETY: as in `group_q4`; one token per call: SIMD128, as in `group_q4`.
        Isa::RelaxedSimd if x.tokens == 1 => unsafe { simd128_q8::<1>(w, g, x, frac_out, o, 0) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
        // SAFETY: as for SIMD128; the weight sums this kernel reads are checked here.
        Isa::RelaxedSimd => unsafe {
            assert!(w.ws.len() == w.d.len());
            by_twos!(x, |t| relaxed_q8::<N>(w, g, x, frac_out, o, t))
        },
        _ => by_fours!(x, |t| portable_q8::<N>(w, g, x, frac_out, o, t)),
    }
}

impl Isa {
    /// Rows per call of [`groups_q4`] / [`groups_q8`] for `tokens` tokens (the unit the
    /// matmuls share out among threads): 16 where one vector holds two groups
    /// (`Avx512Vnni`) and the call has enough tokens to be bound by arithmetic, else 8.
    pub fn unit(self, tokens: usize) -> usize {
        match self {
            Isa::Avx512Vnni if tokens >= PAIR_MIN_TOKENS => 2 * GROUP,
            _ => GROUP,
        }
    }
}

/// Tokens per call from which `Avx512Vnni` takes two groups per vector: a prefill batch
/// (compression, 256 or 2,048 rows), not decoding. In decoding (1–4 rows per call, one per
/// chunk in lock-step) a call is bound by reading the weights, and the pairs were slower
/// (alice12k, `lmz -d`, median of 3, 2 threads): one chunk of 3 KB 4.8 s against 4.4 s, two
/// chunks 15.8 against 14.3 s, four chunks 11.1 against 9.9 s.
const PAIR_MIN_TOKENS: usize = 16;

/// Q4: rows `8g..8g + 8n` (groups `g..g + n`, `n ≤ isa.unit(tokens) / 8`) for every token into `o`
/// (`[8n, tokens]`): two groups at once through the 512-bit kernel where `isa` has one, else
/// one by one through [`group_q4`].
pub fn groups_q4(isa: Isa, w: &CpuQ4, g: usize, n: usize, x: &QAct, frac_out: i32, o: &mut [i32]) {
    match (isa, n) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512Vnni, 2) => {
            assert!(isa.runs(), "{isa:?} does not run on this machine");
            check_q4(w, g + 1, x, o);
            assert!(o.len() >= 2 * GROUP * x.tokens);
            // SAFETY: AVX-512 F/BW/VNNI are present (`runs`); the shapes of both groups are
            // checked by `check_q4` (of the second) and the line above.
            unsafe { by_fours!(x, |t| vnni512_q4::<N>(w, g, x, frac_out, o, t)) }
        }
        _ => {
            for (i, o) in o.chunks_mut(GROUP * x.tokens).take(n).enumerate() {
                group_q4(isa, w, g + i, x, frac_out, o);
            }
        }
    }
}

/// Q8: as [`groups_q4`].
pub fn groups_q8(isa: Isa, w: &CpuQ8, g: usize, n: usize, x: &QAct, frac_out: i32, o: &mut [i32]) {
    match (isa, n) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512Vnni, 2) => {
            assert!(isa.runs(), "{isa:?} does not run on this machine");
            check_q8(w, g + 1, x, o);
            assert!(o.len() >= 2 * GROUP * x.tokens && x.sum.len() >= x.tokens * (w.cols / 32));
            // SAFETY: as in `groups_q4`; the block sums read by this kernel are checked above.
            unsafe { by_fours!(x, |t| vnni512_q8::<N>(w, g, x, frac_out, o, t)) }
        }
        _ => {
            for (i, o) in o.chunks_mut(GROUP * x.tokens).take(n).enumerate() {
                group_q8(isa, w, g + i, x, frac_out, o);
            }
        }
    }
}

use portable::{group_q4 as portable_q4, group_q8 as portable_q8};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use wasm::{group_q4 as simd128_q4, group_q8 as simd128_q8};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
use wasm::{relaxed_q4, relaxed_q8};
#[cfg(target_arch = "x86_64")]
use x86::{group_q4 as avx2_q4, group_q8 as avx2_q8, vnni512_q4, vnni512_q8, vnni_q4, vnni_q8};

/// Writes the 8 rows' rounded outputs of token `t` from their exact sums.
#[inline(always)]
fn finish(acc: &[i64; GROUP], e: &[i8], exp: i32, frac_out: i32, o: &mut [i32], t: usize, tokens: usize) {
    for i in 0..GROUP {
        o[i * tokens + t] = round_shift_sat_i64(acc[i], e[i] as i32 - exp - frac_out);
    }
}

/// Attention scores of one head over `n = scores.len()` keys as in
/// [`super::attention_tile_with`]: `t_j = round_shift_sat(q·k_j, shift0 − k_exp_j)`; returns the
/// maximum. `isa` must run here.
#[allow(clippy::too_many_arguments)]
pub fn head_scores(
    isa: Isa,
    qi: &[i16],
    k: &[i16],
    k_exp: &[i32],
    kvd: usize,
    n_kv: usize,
    kvh: usize,
    shift0: i32,
    scores: &mut [i32],
) -> i32 {
    assert!(isa.runs(), "{isa:?} does not run on this machine");
    let (n, hd) = (scores.len(), qi.len());
    assert!(k.len() >= n * kvd && k_exp.len() >= n * n_kv && kvh < n_kv && (kvh + 1) * hd <= kvd);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present; bounds asserted just above.
        Isa::Avx2 | Isa::AvxVnni if hd == 64 && shift0 <= 12 => unsafe {
            x86::head_scores(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F/BW/VNNI and AVX2 are present; bounds asserted just above.
        Isa::Avx512Vnni if hd == 64 && shift0 <= 12 => unsafe {
            x86::head_scores512(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores)
        },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: bounds asserted just above.
        Isa::Simd128 | Isa::RelaxedSimd if hd == 64 => unsafe {
            wasm::head_scores(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores)
        },
        _ => portable::head_scores(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores),
    }
}

/// `out += Σ_j pn_j·v_j` over keys with `pn_j = floor((p_j·2^15 + sum/2) / sum)`, as in
/// [`super::attention_tile_with`] (`sum` = Σ p ≥ 2^15, each p ≤ 2^15). It adds, so the keys of one
/// query can come in blocks (every partial sum of the whole stays below 2^31: the bits do not
/// depend on the blocks). `isa` must run here.
pub fn head_values(isa: Isa, p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
    assert!(isa.runs(), "{isa:?} does not run on this machine");
    assert!(v.len() >= p.len() * kvd && off + out.len() <= kvd && sum >= 1 << 15);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present; bounds asserted just above.
        Isa::Avx2 | Isa::AvxVnni if out.len() == 64 => unsafe { x86::head_values(p, v, kvd, off, sum, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F/BW/VNNI and AVX2 are present; bounds asserted just above.
        Isa::Avx512Vnni if out.len() == 64 => unsafe { x86::head_values512(p, v, kvd, off, sum, out) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: bounds asserted just above.
        Isa::Simd128 | Isa::RelaxedSimd if out.len() == 64 => unsafe { wasm::head_values(p, v, kvd, off, sum, out) },
        _ => portable::head_values(p, v, kvd, off, sum, out),
    }
}

/// `p_j = exp_q15[d & 255] >> (d >> 8)` with `d = tmax − t_j` (0 when `d ≥ 2^12`), as in
/// [`super::attention_tile_with`]; returns `Σ p` (< 2^31 for ≤ 2^16 keys). `exp_q15` has 256
/// entries ≤ 2^15; every `t_j ≤ tmax`. `isa` must run here.
pub fn head_probs(isa: Isa, scores: &[i32], tmax: i32, exp_q15: &[u32], probs: &mut [u32]) -> u32 {
    assert!(isa.runs(), "{isa:?} does not run on this machine");
    assert!(exp_q15.len() == 256 && probs.len() == scores.len() && exp_q15.iter().all(|&e| e <= 1 << 15));
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present; the table has 256 entries (the gather's indices are < 256).
        Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni => unsafe { x86::head_probs(scores, tmax, exp_q15, probs) },
        _ => portable::head_probs(scores, tmax, exp_q15, probs),
    }
}

/// `ceil(2^64 / sum)`: `floor(num / sum) = floor(num · inv / 2^64)` for every `num < 2^31`
/// and `2^15 ≤ sum ≤ 2^28` — the error `num·(inv − 2^64/sum)/2^64 < 2^-33` is below the gap
/// `1/sum ≥ 2^-28` between `num/sum` and the next integer, so the quotient is exact.
#[inline(always)]
fn recip(sum: u32) -> u64 {
    (1u128 << 64).div_ceil(sum as u128) as u64
}

/// `pn = floor((p·2^15 + sum/2) / sum)` by [`recip`] (`p·2^15 + sum/2 < 2^31`).
#[inline(always)]
fn p_norm(p: u32, sum: u32, inv: u64) -> u32 {
    if p == 0 {
        0
    } else {
        ((((p << 15) + sum / 2) as u64 as u128 * inv as u128) >> 64) as u32
    }
}

/// The packed 16-bit weight pairs `(pn_j, pn_j+1)` of the SIMD `head_values` passes: each
/// ≤ 32767, a `pn` of 2^15 split as 32767 + 1 into the second pass; a word of 0 has nothing
/// to add.
#[inline(always)]
#[allow(dead_code)] // not on targets without a SIMD head_values
fn pair_words(a: u32, b: u32) -> [i32; 2] {
    let (ca, cb) = ((a >> 15) as i32, (b >> 15) as i32); // 1 where pn = 2^15
    let pack = |wa: i32, wb: i32| (wb << 16) | (wa & 0xFFFF);
    [pack(a as i32 - ca, b as i32 - cb), pack(ca, cb)]
}

// --- the implementations ---

mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;
