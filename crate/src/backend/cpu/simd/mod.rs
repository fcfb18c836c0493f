//! The CPU engine's hot loops, one implementation per instruction set, chosen per call.
//!
//! Matmul (`group_q4`, `group_q8`): one group of 8 rows in the engine's interleaved layout
//! (see [`super::CpuQ4`]), one lane per row, so nothing is summed horizontally across the
//! block. Every implementation computes the same integers as [`super::dot_q4`] /
//! [`super::dot_q8`]: per block the exact block dot `S` of each row, the block term `T`
//! (|T| < 2^30), the exact sum `Σ T_b·a_b` in 64 bits, then one rounding shift — so the bits
//! are identical (tested below on random and extreme inputs, on every [`Isa`] this machine
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
            Isa::AvxVnni => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("avxvnni"),
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
        [Isa::Avx512Vnni, Isa::AvxVnni, Isa::Avx2, Isa::RelaxedSimd, Isa::Simd128].into_iter().find(|i| i.runs()).unwrap_or(Isa::Portable)
    }

    /// Every one that runs here (parity tests and benchmarks compare them).
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni, Isa::Simd128, Isa::RelaxedSimd].into_iter().filter(|i| i.runs()).collect()
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
    assert!(w.cols.is_multiple_of(32) && x.width == w.cols && w.w.len() >= (g + 1) * nb * 128 && w.d.len() >= (g + 1) * nb * GROUP && w.m.len() >= (g + 1) * nb * GROUP && w.e.len() >= (g + 1) * GROUP);
    assert!(x.q.len() >= x.tokens * x.width && x.a.len() >= x.tokens * nb && x.sum.len() >= x.tokens * nb && x.exp.len() >= x.tokens && o.len() >= GROUP * x.tokens);
}

fn check_q8(w: &CpuQ8, g: usize, x: &QAct, o: &[i32]) {
    let nb = w.cols / 32;
    assert!(nb < 1 << 11, "wider than the kernels' exact sums allow");
    assert!(w.cols.is_multiple_of(32) && x.width == w.cols && w.q.len() >= (g + 1) * nb * 256 && w.d.len() >= (g + 1) * nb * GROUP && w.e.len() >= (g + 1) * GROUP);
    assert!(x.q.len() >= x.tokens * x.width && x.a.len() >= x.tokens * nb && x.exp.len() >= x.tokens && o.len() >= GROUP * x.tokens);
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

#[cfg(target_arch = "x86_64")]
use x86::{group_q4 as avx2_q4, group_q8 as avx2_q8, vnni512_q4, vnni512_q8, vnni_q4, vnni_q8};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use wasm::{group_q4 as simd128_q4, group_q8 as simd128_q8};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
use wasm::{relaxed_q4, relaxed_q8};
use portable::{group_q4 as portable_q4, group_q8 as portable_q8};

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
pub fn head_scores(isa: Isa, qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
    assert!(isa.runs(), "{isa:?} does not run on this machine");
    let (n, hd) = (scores.len(), qi.len());
    assert!(k.len() >= n * kvd && k_exp.len() >= n * n_kv && kvh < n_kv && (kvh + 1) * hd <= kvd);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present; bounds asserted just above.
        Isa::Avx2 | Isa::AvxVnni if hd == 64 && shift0 <= 12 => unsafe { x86::head_scores(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F/BW/VNNI and AVX2 are present; bounds asserted just above.
        Isa::Avx512Vnni if hd == 64 && shift0 <= 12 => unsafe { x86::head_scores512(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: bounds asserted just above.
        Isa::Simd128 | Isa::RelaxedSimd if hd == 64 => unsafe { wasm::head_scores(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores) },
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

// --- portable ---

mod portable {
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
            let (d, m) = (&w.d[(g * nb + b) * GROUP..(g * nb + b + 1) * GROUP], &w.m[(g * nb + b) * GROUP..(g * nb + b + 1) * GROUP]);
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
            finish(ak, &w.e[g * GROUP..(g + 1) * GROUP], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
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
            finish(ak, &w.e[g * GROUP..(g + 1) * GROUP], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// See [`super::head_scores`]: |q·k| ≤ hd·511·511 < 2^24 for hd ≤ 64 (i32; the oracle
    /// allows any head dim ≤ 256: < 2^26).
    #[allow(clippy::too_many_arguments)]
    pub fn head_scores(qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
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
}

// --- wasm32 SIMD128 ---

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
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
        acc[2 * h + 1] = madd(f64x2_convert_low_i32x4(i32x4_shuffle::<2, 3, 2, 3>(t, t)), a, acc[2 * h + 1]);
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
    unsafe fn q4_block<const N: usize>(w: &CpuQ4, g: usize, b: usize, x: &QAct, t0: usize, s: [[v128; 2]; N], acc: &mut [[v128; 4]; N]) {
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
    fn finish_group<const N: usize>(acc: &[[v128; 4]; N], e: &[i8], g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        for (k, ak) in acc.iter().enumerate() {
            finish(&lanes(ak), &e[g * GROUP..(g + 1) * GROUP], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
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
                let wl = [u16x8_extend_low_u8x16(lo[0]), u16x8_extend_high_u8x16(lo[0]), u16x8_extend_low_u8x16(lo[1]), u16x8_extend_high_u8x16(lo[1])];
                let wh = [u16x8_extend_low_u8x16(hi[0]), u16x8_extend_high_u8x16(hi[0]), u16x8_extend_low_u8x16(hi[1]), u16x8_extend_high_u8x16(hi[1])];
                for (k, sk) in s.iter_mut().enumerate() {
                    let q = x.q.as_ptr().add((t0 + k) * cols + 32 * b + 8 * p);
                    let (ql, qh) = (splat4(q), splat4(q.add(4)));
                    for j in 0..4 {
                        sk[j] = i32x4_add(sk[j], i32x4_add(i32x4_dot_i16x8(wl[j], ql), i32x4_dot_i16x8(wh[j], qh)));
                    }
                }
            }
            q4_block(w, g, b, x, t0, s.map(|sk| [rows4(sk[0], sk[1]), rows4(sk[2], sk[3])]), &mut acc);
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
                let wv = [i16x8_extend_low_i8x16(r[0]), i16x8_extend_high_i8x16(r[0]), i16x8_extend_low_i8x16(r[1]), i16x8_extend_high_i8x16(r[1])];
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
                let nib = [v128_and(r[0], m4), v128_and(r[1], m4), u8x16_shr(r[0], 4), u8x16_shr(r[1], 4)];
                for (k, sk) in s.iter_mut().enumerate() {
                    let q = x.q.as_ptr().add((t0 + k) * cols + 32 * b + 8 * p);
                    let (ql, qh) = (v128_load32_splat(q as *const u32), v128_load32_splat(q.add(4) as *const u32));
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
                *xk = [v128_and(u[0], m4), v128_and(u[1], m4), u8x16_shr(u[0], 4), u8x16_shr(u[1], 4)];
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
        let a = i32x4_add(i32x4_shuffle::<0, 4, 2, 6>(v[0], v[1]), i32x4_shuffle::<1, 5, 3, 7>(v[0], v[1])); // (Σ01 v0, Σ01 v1, Σ23 v0, Σ23 v1)
        let b = i32x4_add(i32x4_shuffle::<0, 4, 2, 6>(v[2], v[3]), i32x4_shuffle::<1, 5, 3, 7>(v[2], v[3]));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
    }

    /// See [`super::head_scores`] (head dim 64): eight `dot_i16x8` per key (|q·k| < 2^24,
    /// pair sums < 2^19), four keys reduced together, the per-key rounding shift in scalar
    /// (SIMD128 shifts one amount per vector).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn head_scores(qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
        let n = scores.len();
        let q: [v128; 8] = std::array::from_fn(|c| load(qi.as_ptr().add(8 * c)));
        let kp = k.as_ptr().add(kvh * 64);
        let dot = |j: usize| {
            let r = kp.add(j * kvd);
            let m = |c: usize| i32x4_dot_i16x8(q[c], load(r.add(8 * c)));
            i32x4_add(i32x4_add(i32x4_add(m(0), m(1)), i32x4_add(m(2), m(3))), i32x4_add(i32x4_add(m(4), m(5)), i32x4_add(m(6), m(7))))
        };
        let mut tmax = i32::MIN;
        let mut j = 0;
        while j + 4 <= n {
            let t = hsum4([dot(j), dot(j + 1), dot(j + 2), dot(j + 3)]);
            let ts = [i32x4_extract_lane::<0>(t), i32x4_extract_lane::<1>(t), i32x4_extract_lane::<2>(t), i32x4_extract_lane::<3>(t)];
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
            let (a, b) = (p_norm(p[j], sum, inv), if j + 1 < n { p_norm(p[j + 1], sum, inv) } else { 0 });
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
}

// --- x86-64 AVX2 ---

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CpuQ4, CpuQ8, QAct};
    use crate::wide::round_shift_sat_i64;
    use std::arch::x86_64::*;

    /// Sums of eight 8-lane vectors → one 8-lane vector, lane k = Σ p[k].
    #[inline(always)]
    unsafe fn hsum8(p: &[__m256i; 8]) -> __m256i {
        let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
    }

    /// Asks for the weights `PREFETCH` bytes ahead of `p` (a block of `len` bytes, 64-byte
    /// lines): decoding one token streams every weight from memory once, and the hardware
    /// prefetcher alone leaves the kernel waiting on it. A hint: it changes no result, and
    /// an address past the end of the weights is harmless (prefetches do not fault).
    #[inline(always)]
    unsafe fn prefetch_ahead<T>(p: *const T, len: usize) {
        const PREFETCH: usize = 2048;
        let mut o = 0;
        while o < len {
            _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(PREFETCH + o));
            o += 64;
        }
    }

    /// Four activations (bytes) broadcast to every lane.
    #[inline(always)]
    unsafe fn bcast4(q: *const i8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(q as *const i32))
    }

    /// Writes the 8 rows' rounded outputs of token `t`: `acc_e` holds rows 0,2,4,6 and
    /// `acc_o` rows 1,3,5,7 as exact i64 sums.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn finish(acc_e: __m256i, acc_o: __m256i, e: &[i8], exp: i32, frac_out: i32, o: &mut [i32], t: usize, tokens: usize) {
        let (mut ev, mut od) = ([0i64; 4], [0i64; 4]);
        _mm256_storeu_si256(ev.as_mut_ptr() as *mut __m256i, acc_e);
        _mm256_storeu_si256(od.as_mut_ptr() as *mut __m256i, acc_o);
        for i in 0..4 {
            o[(2 * i) * tokens + t] = round_shift_sat_i64(ev[i], e[2 * i] as i32 - exp - frac_out);
            o[(2 * i + 1) * tokens + t] = round_shift_sat_i64(od[i], e[2 * i + 1] as i32 - exp - frac_out);
        }
    }

    /// Tokens `t0..t0+N` of Q4 group `g` (see [`super::group_q4`]).
    /// `T = d·(S − 8X) + m·X`, |T| < 2^29; `T·a` < 2^42 in i64 lanes. Per block, each 32-byte
    /// load of nibbles is split into its two steps and used by every token at once, so the
    /// registers hold N i16 partial dots and 2N accumulators (no spill up to N = 4).
    ///
    /// `T` takes two `madd`s and no 32-bit multiply: `T = d·S + (m·X − 8d·X)`, the first the
    /// i16 pair sums of row r (lanes `2r`, `2r+1`, each ≤ 4·2·15·127 = 30,480) times
    /// `(d_r, d_r)`, |·| ≤ 2·8191·30,480 < 2^31; the second `(m_r, d_r)` times `(X, −8X)`
    /// (|8X| ≤ 32,512 fits i16), |·| ≤ 8191·(4064 + 32,512) < 2^31. Their i32 sum wraps
    /// exactly to T since |T| < 2^31.
    #[target_feature(enable = "avx2")]
    pub unsafe fn group_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let m4 = _mm256_set1_epi8(15);
        let mut acc_e = [_mm256_setzero_si256(); N];
        let mut acc_o = [_mm256_setzero_si256(); N];
        let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
        for b in 0..nb {
            let wp = w.w.as_ptr().add((g * nb + b) * 128);
            prefetch_ahead(wp, 128);
            let mut s16 = [_mm256_setzero_si256(); N];
            for p in 0..4 {
                let raw = _mm256_loadu_si256(wp.add(32 * p) as *const __m256i);
                let lo = _mm256_and_si256(raw, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                for k in 0..N {
                    let q = qp[k].add(32 * b + 8 * p);
                    let pair = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(q)), _mm256_maddubs_epi16(hi, bcast4(q.add(4))));
                    s16[k] = _mm256_add_epi16(s16[k], pair);
                }
            }
            let d = _mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i);
            let m = _mm_loadu_si128(w.m.as_ptr().add((g * nb + b) * 8) as *const __m128i);
            let dd = _mm256_set_m128i(_mm_unpackhi_epi16(d, d), _mm_unpacklo_epi16(d, d)); // (d_r, d_r)
            let md = _mm256_set_m128i(_mm_unpackhi_epi16(m, d), _mm_unpacklo_epi16(m, d)); // (m_r, d_r)
            for k in 0..N {
                let t = t0 + k;
                // (X, −8X) as the halves of one i32 (`madd` reads each half as i16).
                let xs = *x.sum.get_unchecked(t * nb + b);
                let xp = _mm256_set1_epi32(((xs.wrapping_mul(-8) as u32) << 16 | (xs as u32 & 0xffff)) as i32);
                let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = _mm256_add_epi32(_mm256_madd_epi16(s16[k], dd), _mm256_madd_epi16(md, xp));
                acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
                acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 8], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// Tokens `t0..t0+N` of Q8 group `g`: `maddubs` of |w| with the activations carrying w's
    /// sign (pairs ≤ 2·128·127 < 2^15), one `madd` per step by `(d_r, d_r)`, which makes `T =
    /// d·S` without a 32-bit multiply: a step's lane is ≤ 2047·2·32,512 < 2^27, eight < 2^30.
    #[target_feature(enable = "avx2")]
    pub unsafe fn group_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let mut acc_e = [_mm256_setzero_si256(); N];
        let mut acc_o = [_mm256_setzero_si256(); N];
        let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
        for b in 0..nb {
            let wp = w.q.as_ptr().add((g * nb + b) * 256);
            prefetch_ahead(wp, 256);
            let d = _mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i);
            let dd = _mm256_set_m128i(_mm_unpackhi_epi16(d, d), _mm_unpacklo_epi16(d, d)); // (d_r, d_r)
            // Each weight step is loaded once and used by every token (N i32 partial T).
            let mut tk = [_mm256_setzero_si256(); N];
            for st in 0..8 {
                let wk = _mm256_loadu_si256(wp.add(32 * st) as *const __m256i);
                let wa = _mm256_abs_epi8(wk);
                for k in 0..N {
                    let p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(bcast4(qp[k].add(32 * b + 4 * st)), wk));
                    tk[k] = _mm256_add_epi32(tk[k], _mm256_madd_epi16(p, dd));
                }
            }
            for k in 0..N {
                let t = t0 + k;
                let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = tk[k];
                acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
                acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 8], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// Tokens `t0..t0+N` of Q4 group `g` with AVX-VNNI: per block and token, eight
    /// `vpdpbusd` (nibbles as u8 × activations as i8) give each row's exact block dot `S` in
    /// an i32 lane (|S| ≤ 32·15·127 < 2^16), then `T = d·S + (m·X − 8d·X)`: `d·S` one
    /// `mullo` (|·| < 2^13·2^16 = 2^29), the rest the `madd` of [`group_q4`]; the i32 sum
    /// wraps exactly to T (|T| < 2^31). `Σ T·a` as there.
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn vnni_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let m4 = _mm256_set1_epi8(15);
        let mut acc_e = [_mm256_setzero_si256(); N];
        let mut acc_o = [_mm256_setzero_si256(); N];
        let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
        for b in 0..nb {
            let wp = w.w.as_ptr().add((g * nb + b) * 128);
            prefetch_ahead(wp, 128);
            let mut s32 = [_mm256_setzero_si256(); N];
            for p in 0..4 {
                let raw = _mm256_loadu_si256(wp.add(32 * p) as *const __m256i);
                let lo = _mm256_and_si256(raw, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                for k in 0..N {
                    let q = qp[k].add(32 * b + 8 * p);
                    s32[k] = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(s32[k], lo, bcast4(q)), hi, bcast4(q.add(4)));
                }
            }
            let d = _mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i);
            let m = _mm_loadu_si128(w.m.as_ptr().add((g * nb + b) * 8) as *const __m128i);
            let d32 = _mm256_cvtepi16_epi32(d);
            let md = _mm256_set_m128i(_mm_unpackhi_epi16(m, d), _mm_unpacklo_epi16(m, d)); // (m_r, d_r)
            for k in 0..N {
                let t = t0 + k;
                let xs = *x.sum.get_unchecked(t * nb + b);
                let xp = _mm256_set1_epi32(((xs.wrapping_mul(-8) as u32) << 16 | (xs as u32 & 0xffff)) as i32);
                let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = _mm256_add_epi32(_mm256_mullo_epi32(s32[k], d32), _mm256_madd_epi16(md, xp));
                acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
                acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 8], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// Tokens `t0..t0+N` of Q8 group `g` with AVX-VNNI: one `vpdpbusd` per step of |w| (u8,
    /// ≤ 128) with the activations carrying w's sign (|q| ≤ 127), so each row's block dot
    /// `S` sums exactly in an i32 lane (|S| ≤ 32·128·127 < 2^19), then `T = d·S` by one `mullo`
    /// per block (|T| ≤ 2047·2^19 < 2^30).
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn vnni_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let mut acc_e = [_mm256_setzero_si256(); N];
        let mut acc_o = [_mm256_setzero_si256(); N];
        let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
        for b in 0..nb {
            let wp = w.q.as_ptr().add((g * nb + b) * 256);
            prefetch_ahead(wp, 256);
            let d32 = _mm256_cvtepi16_epi32(_mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i));
            let mut sk = [_mm256_setzero_si256(); N];
            for st in 0..8 {
                let wk = _mm256_loadu_si256(wp.add(32 * st) as *const __m256i);
                let wa = _mm256_abs_epi8(wk);
                for k in 0..N {
                    sk[k] = _mm256_dpbusd_avx_epi32(sk[k], wa, _mm256_sign_epi8(bcast4(qp[k].add(32 * b + 4 * st)), wk));
                }
            }
            for k in 0..N {
                let t = t0 + k;
                let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = _mm256_mullo_epi32(sk[k], d32);
                acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
                acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 8], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// Writes the 16 rows' rounded outputs of token `t` from a two-group kernel: `acc_e`
    /// holds rows 0, 2, …, 14 and `acc_o` rows 1, 3, …, 15 as exact i64 sums.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn finish16(acc_e: __m512i, acc_o: __m512i, e: &[i8], exp: i32, frac_out: i32, o: &mut [i32], t: usize, tokens: usize) {
        let (mut ev, mut od) = ([0i64; 8], [0i64; 8]);
        _mm512_storeu_si512(ev.as_mut_ptr() as *mut __m512i, acc_e);
        _mm512_storeu_si512(od.as_mut_ptr() as *mut __m512i, acc_o);
        for i in 0..8 {
            o[(2 * i) * tokens + t] = round_shift_sat_i64(ev[i], e[2 * i] as i32 - exp - frac_out);
            o[(2 * i + 1) * tokens + t] = round_shift_sat_i64(od[i], e[2 * i + 1] as i32 - exp - frac_out);
        }
    }

    /// The 32-byte steps of groups `g` and `g + 1` at the same offset as one 512-bit vector
    /// (group `g` in the low half: lane `r` is row `r` of the pair).
    #[inline(always)]
    unsafe fn pair_load(p0: *const u8, p1: *const u8) -> __m512i {
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_loadu_si256(p0 as *const __m256i)), _mm256_loadu_si256(p1 as *const __m256i))
    }

    /// Per-row block values of groups `g` and `g + 1` (8 i16 each) widened to 16 i32 lanes.
    #[inline(always)]
    unsafe fn pair_i16(p0: *const i16, p1: *const i16) -> __m512i {
        _mm512_cvtepi16_epi32(_mm256_set_m128i(_mm_loadu_si128(p1 as *const __m128i), _mm_loadu_si128(p0 as *const __m128i)))
    }

    /// Tokens `t0..t0+N` of Q4 groups `g` and `g + 1` with AVX-512 VNNI: the arithmetic of
    /// [`vnni_q4`] lane for lane, on 16 lanes (the two groups' rows) instead of 8, so each
    /// activation broadcast, `vpdpbusd` and block scaling serves 16 rows.
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn vnni512_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let m4 = _mm512_set1_epi8(15);
        let mut acc_e = [_mm512_setzero_si512(); N];
        let mut acc_o = [_mm512_setzero_si512(); N];
        let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
        for b in 0..nb {
            let (i0, i1) = (g * nb + b, (g + 1) * nb + b);
            let (wp0, wp1) = (w.w.as_ptr().add(i0 * 128), w.w.as_ptr().add(i1 * 128));
            prefetch_ahead(wp0, 128);
            prefetch_ahead(wp1, 128);
            let mut s32 = [_mm512_setzero_si512(); N];
            for p in 0..4 {
                let raw = pair_load(wp0.add(32 * p), wp1.add(32 * p));
                let lo = _mm512_and_si512(raw, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
                for k in 0..N {
                    let q = qp[k].add(32 * b + 8 * p);
                    let (ql, qh) = (_mm512_set1_epi32(std::ptr::read_unaligned(q as *const i32)), _mm512_set1_epi32(std::ptr::read_unaligned(q.add(4) as *const i32)));
                    s32[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s32[k], lo, ql), hi, qh);
                }
            }
            let d32 = pair_i16(w.d.as_ptr().add(i0 * 8), w.d.as_ptr().add(i1 * 8));
            // (m_r, d_r) as the halves of lane r: m in the low 16 bits, d in the high.
            let md = _mm512_or_si512(_mm512_and_si512(pair_i16(w.m.as_ptr().add(i0 * 8), w.m.as_ptr().add(i1 * 8)), _mm512_set1_epi32(0xffff)), _mm512_slli_epi32::<16>(d32));
            for k in 0..N {
                let t = t0 + k;
                let xs = *x.sum.get_unchecked(t * nb + b);
                let xp = _mm512_set1_epi32(((xs.wrapping_mul(-8) as u32) << 16 | (xs as u32 & 0xffff)) as i32);
                let av = _mm512_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = _mm512_add_epi32(_mm512_mullo_epi32(s32[k], d32), _mm512_madd_epi16(md, xp));
                acc_e[k] = _mm512_add_epi64(acc_e[k], _mm512_mul_epi32(tv, av));
                acc_o[k] = _mm512_add_epi64(acc_o[k], _mm512_mul_epi32(_mm512_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish16(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 16], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// Tokens `t0..t0+N` of Q8 groups `g` and `g + 1` with AVX-512 VNNI. The weights go in as
    /// unsigned bytes `w + 128` (one `xor` per weight load, shared by the tokens; AVX-512 has
    /// no 512-bit `sign_epi8` for [`vnni_q8`]'s form), so `vpdpbusd` sums `Σ (w+128)·q` exactly
    /// in an i32 lane (≤ 32·255·127 < 2^20), and `S = that − 128·X` with X the block's
    /// activation sum (|X| ≤ 4064); then `T = d·S` (|T| ≤ 2047·2^19 < 2^30) as there.
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn vnni512_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let bias = _mm512_set1_epi8(-128);
        let mut acc_e = [_mm512_setzero_si512(); N];
        let mut acc_o = [_mm512_setzero_si512(); N];
        let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
        for b in 0..nb {
            let (i0, i1) = (g * nb + b, (g + 1) * nb + b);
            let (wp0, wp1) = (w.q.as_ptr().add(i0 * 256) as *const u8, w.q.as_ptr().add(i1 * 256) as *const u8);
            prefetch_ahead(wp0, 256);
            prefetch_ahead(wp1, 256);
            let d32 = pair_i16(w.d.as_ptr().add(i0 * 8), w.d.as_ptr().add(i1 * 8));
            let mut sk = [_mm512_setzero_si512(); N];
            for st in 0..8 {
                let wu = _mm512_xor_si512(pair_load(wp0.add(32 * st), wp1.add(32 * st)), bias);
                for k in 0..N {
                    let q = _mm512_set1_epi32(std::ptr::read_unaligned(qp[k].add(32 * b + 4 * st) as *const i32));
                    sk[k] = _mm512_dpbusd_epi32(sk[k], wu, q);
                }
            }
            for k in 0..N {
                let t = t0 + k;
                let xs = _mm512_set1_epi32(*x.sum.get_unchecked(t * nb + b) << 7);
                let av = _mm512_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = _mm512_mullo_epi32(_mm512_sub_epi32(sk[k], xs), d32);
                acc_e[k] = _mm512_add_epi64(acc_e[k], _mm512_mul_epi32(tv, av));
                acc_o[k] = _mm512_add_epi64(acc_o[k], _mm512_mul_epi32(_mm512_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish16(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 16], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// See [`super::head_scores`]. Eight keys per step: four `madd`s per key, the eight
    /// sums reduced to one vector, then the per-key rounding shift of [`scores_by8`].
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn head_scores(qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
        let q: [__m256i; 4] = std::array::from_fn(|c| _mm256_loadu_si256(qi.as_ptr().add(16 * c) as *const __m256i));
        let kp = k.as_ptr().add(kvh * 64);
        let dot = |j: usize| {
            let r = kp.add(j * kvd);
            let m = |c: usize| _mm256_madd_epi16(q[c], _mm256_loadu_si256(r.add(16 * c) as *const __m256i));
            _mm256_add_epi32(_mm256_add_epi32(m(0), m(1)), _mm256_add_epi32(m(2), m(3)))
        };
        scores_by8(|j| hsum8(&std::array::from_fn(|i| dot(j + i))), qi, k, k_exp, kvd, n_kv, kvh, shift0, scores)
    }

    /// [`head_scores`] with AVX-512 VNNI, sixteen keys per step: a key's 64-element dot is
    /// one `madd` and one `vpdpwssd` on 32-element vectors (i16 pairs summed into i32
    /// lanes: partial sums of the exact dot, |·| < 2^24 as in the portable loop), the sixteen
    /// keys' vectors reduced to one (lane i = key i) by a transpose-and-add tree, then the
    /// rounding shift of [`scores_by8`] on 16 lanes. The last `n mod 16` keys go to
    /// [`scores_by8`].
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn head_scores512(qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
        let n = scores.len();
        let (q0, q1) = (_mm512_loadu_si512(qi.as_ptr() as *const __m512i), _mm512_loadu_si512(qi.as_ptr().add(32) as *const __m512i));
        let kp = k.as_ptr().add(kvh * 64);
        let dot = |j: usize| {
            let r = kp.add(j * kvd);
            _mm512_dpwssd_epi32(_mm512_madd_epi16(q0, _mm512_loadu_si512(r as *const __m512i)), q1, _mm512_loadu_si512(r.add(32) as *const __m512i))
        };
        let (one, zero) = (_mm512_set1_epi32(1), _mm512_setzero_si512());
        let mut vmax = _mm512_set1_epi32(i32::MIN);
        let mut j = 0;
        while j + 16 <= n {
            let t = sum16(&std::array::from_fn(|i| dot(j + i)));
            let ek: [i32; 16] = std::array::from_fn(|i| k_exp[(j + i) * n_kv + kvh]);
            let s = _mm512_sub_epi32(_mm512_set1_epi32(shift0), _mm512_loadu_si512(ek.as_ptr() as *const __m512i));
            let right = _mm512_srav_epi32(_mm512_add_epi32(t, _mm512_sllv_epi32(one, _mm512_sub_epi32(s, one))), s);
            let l = _mm512_sub_epi32(zero, s);
            let sh = _mm512_sllv_epi32(t, l);
            let fits = _mm512_cmpeq_epi32_mask(_mm512_srav_epi32(sh, l), t);
            let sat = _mm512_xor_si512(_mm512_set1_epi32(i32::MAX), _mm512_srai_epi32::<31>(t));
            let left = _mm512_mask_blend_epi32(fits, sat, sh);
            let r = _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(s, zero), left, right);
            _mm512_storeu_si512(scores.as_mut_ptr().add(j) as *mut __m512i, r);
            vmax = _mm512_max_epi32(vmax, r);
            j += 16;
        }
        let head = if j > 0 { _mm512_reduce_max_epi32(vmax) } else { i32::MIN };
        if j == n {
            return head;
        }
        let j0 = j;
        let dot8 = |j: usize| {
            let p: [__m256i; 8] = std::array::from_fn(|i| {
                let v = dot(j0 + j + i);
                _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
            });
            hsum8(&p)
        };
        let rest = scores_by8(dot8, qi, &k[j * kvd..], &k_exp[j * n_kv..], kvd, n_kv, kvh, shift0, &mut scores[j..]);
        head.max(rest)
    }

    /// Sixteen 16-lane vectors → one, lane k = Σ p[k]: adds of unpacked pairs (32-bit, then
    /// 64-bit), then of 128-bit lanes shuffled across pairs of vectors.
    #[inline(always)]
    unsafe fn sum16(p: &[__m512i; 16]) -> __m512i {
        let a: [__m512i; 8] = std::array::from_fn(|i| _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * i], p[2 * i + 1]), _mm512_unpackhi_epi32(p[2 * i], p[2 * i + 1])));
        let b: [__m512i; 4] = std::array::from_fn(|i| _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1])));
        // b[i], 128-bit lane L: keys 4i..4i+4, partial L.
        let c: [__m512i; 2] = std::array::from_fn(|i| _mm512_add_epi32(_mm512_shuffle_i32x4::<0x88>(b[2 * i], b[2 * i + 1]), _mm512_shuffle_i32x4::<0xDD>(b[2 * i], b[2 * i + 1])));
        // c[i]: [keys 8i..8i+4 (partials 0+1, then 2+3), keys 8i+4..8i+8 (the same)].
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0x88>(c[0], c[1]), _mm512_shuffle_i32x4::<0xDD>(c[0], c[1]))
    }

    /// The scores of [`head_scores`] from `dot8(j)`, the exact dots of keys `j..j+8` in eight
    /// lanes: the per-key rounding shift in 8 lanes: for `s > 0` `(t + 2^(s−1)) >> s` (|t| <
    /// 2^24, s ≤ 12: no overflow), for `s ≤ 0` a left shift that saturates when shifting back
    /// does not give `t` (also for shifts ≥ 32, where it is 0). The last `n mod 8` keys go
    /// one by one.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores_by8(dot8: impl Fn(usize) -> __m256i, qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
        let n = scores.len();
        let kp = k.as_ptr().add(kvh * 64);
        let mut vmax = _mm256_set1_epi32(i32::MIN);
        let (one, zero) = (_mm256_set1_epi32(1), _mm256_setzero_si256());
        let mut j = 0;
        while j + 8 <= n {
            let t = dot8(j);
            let ek: [i32; 8] = std::array::from_fn(|i| k_exp[(j + i) * n_kv + kvh]);
            let s = _mm256_sub_epi32(_mm256_set1_epi32(shift0), _mm256_loadu_si256(ek.as_ptr() as *const __m256i));
            // s > 0: round half up.
            let right = _mm256_srav_epi32(_mm256_add_epi32(t, _mm256_sllv_epi32(one, _mm256_sub_epi32(s, one))), s);
            // s ≤ 0: exact left shift or saturation.
            let l = _mm256_sub_epi32(zero, s);
            let sh = _mm256_sllv_epi32(t, l);
            let fits = _mm256_cmpeq_epi32(_mm256_srav_epi32(sh, l), t);
            let sat = _mm256_xor_si256(_mm256_set1_epi32(i32::MAX), _mm256_srai_epi32::<31>(t)); // MAX or MIN by sign
            let left = _mm256_blendv_epi8(sat, sh, fits);
            let r = _mm256_blendv_epi8(left, right, _mm256_cmpgt_epi32(s, zero));
            _mm256_storeu_si256(scores.as_mut_ptr().add(j) as *mut __m256i, r);
            vmax = _mm256_max_epi32(vmax, r);
            j += 8;
        }
        let mut m = [0i32; 8];
        _mm256_storeu_si256(m.as_mut_ptr() as *mut __m256i, vmax);
        let mut tmax = m.iter().copied().max().unwrap_or(i32::MIN);
        for (jj, sc) in scores.iter_mut().enumerate().skip(j) {
            let r = kp.add(jj * kvd);
            let d: i32 = qi.iter().enumerate().map(|(i, &q)| q as i32 * *r.add(i) as i32).sum();
            *sc = round_shift_sat_i64(d as i64, shift0 - k_exp[jj * n_kv + kvh]);
            tmax = tmax.max(*sc);
        }
        tmax
    }

    /// See [`super::head_probs`]: eight keys per step, the table read by a gather; a shift
    /// by `d >> 8 ≥ 16` leaves 0 of an entry ≤ 2^15 (and `srlv` gives 0 for counts ≥ 32).
    #[target_feature(enable = "avx2")]
    pub unsafe fn head_probs(scores: &[i32], tmax: i32, exp_q15: &[u32], probs: &mut [u32]) -> u32 {
        let n = scores.len();
        let (tm, m255) = (_mm256_set1_epi32(tmax), _mm256_set1_epi32(255));
        let mut vsum = _mm256_setzero_si256();
        let mut j = 0;
        while j + 8 <= n {
            let d = _mm256_sub_epi32(tm, _mm256_loadu_si256(scores.as_ptr().add(j) as *const __m256i));
            let e = _mm256_i32gather_epi32::<4>(exp_q15.as_ptr() as *const i32, _mm256_and_si256(d, m255));
            let p = _mm256_srlv_epi32(e, _mm256_srli_epi32::<8>(d));
            _mm256_storeu_si256(probs.as_mut_ptr().add(j) as *mut __m256i, p);
            vsum = _mm256_add_epi32(vsum, p);
            j += 8;
        }
        let mut l = [0u32; 8];
        _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, vsum);
        l.iter().sum::<u32>() + super::portable::head_probs(&scores[j..], tmax, exp_q15, &mut probs[j..])
    }

    /// `pn = floor((p·2^15 + sum/2) · inv / 2^64)` in eight lanes (`inv = ceil(2^64/sum)`, as
    /// [`super::p_norm`]; `p = 0` gives 0): with `inv = ih·2^32 + il`, `num·inv / 2^64 =
    /// (num·ih + (num·il >> 32)) >> 32` exactly (num·ih < 2^48, num·il < 2^63).
    #[inline(always)]
    unsafe fn p_norm8(p: __m256i, half: __m256i, ih: __m256i, il: __m256i) -> __m256i {
        let num = _mm256_add_epi32(_mm256_slli_epi32::<15>(p), half);
        let q = |x: __m256i| _mm256_srli_epi64::<32>(_mm256_add_epi64(_mm256_mul_epu32(x, ih), _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, il))));
        let (qe, qo) = (q(num), q(_mm256_srli_epi64::<32>(num)));
        _mm256_or_si256(qe, _mm256_slli_epi64::<32>(qo))
    }

    /// See [`super::head_values`]. The normalised probabilities are made eight at a time
    /// first ([`p_norm8`]), as 16-bit pairs `(pn_j, pn_j+1)`; then keys go in pairs: `madd` of
    /// the interleaved values of two keys with their pair (each ≤ 32767; a `pn` of 2^15 is
    /// split as 32767 + 1 in a second pass). Products ≤ 2·32767·2^15 < 2^31, and every
    /// partial sum of `Σ pn·v` is bounded by `Σ pn · 2^15 ≤ (2^15 + ctx/2)·2^15 < 2^31`, so
    /// the sums are exact in any order.
    #[target_feature(enable = "avx2")]
    pub unsafe fn head_values(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
        let inv = super::recip(sum);
        let (ih, il, half) = (_mm256_set1_epi64x((inv >> 32) as i64), _mm256_set1_epi64x(inv as u32 as i64), _mm256_set1_epi32((sum / 2) as i32));
        let mut lo = [_mm256_setzero_si256(); 4];
        let mut hi = [_mm256_setzero_si256(); 4];
        let vp = v.as_ptr().add(off);
        let n = p.len();
        // 16 keys at a time: their pn as 8 pairs, then the pairs that are not (0, 0).
        let mut pn = [0u32; 16];
        let mut j0 = 0;
        while j0 < n {
            let m = (n - j0).min(16);
            if m == 16 {
                for h in 0..2 {
                    let x = p_norm8(_mm256_loadu_si256(p.as_ptr().add(j0 + 8 * h) as *const __m256i), half, ih, il);
                    _mm256_storeu_si256(pn.as_mut_ptr().add(8 * h) as *mut __m256i, x);
                }
            } else {
                pn = [0; 16];
                for (o, &pj) in pn.iter_mut().zip(&p[j0..]) {
                    *o = super::p_norm(pj, sum, inv);
                }
            }
            for i in (0..m).step_by(2) {
                let (a, b) = (pn[i], pn[i + 1]); // pn[m] is 0 past the end
                if a == 0 && b == 0 {
                    continue;
                }
                let j = j0 + i;
                let ra = vp.add(j * kvd);
                let rb = if j + 1 < n { vp.add((j + 1) * kvd) } else { ra };
                for w in super::pair_words(a, b) {
                    if w == 0 {
                        continue;
                    }
                    let w = _mm256_set1_epi32(w);
                    for c in 0..4 {
                        let va = _mm256_loadu_si256(ra.add(16 * c) as *const __m256i);
                        let vb = _mm256_loadu_si256(rb.add(16 * c) as *const __m256i);
                        lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(_mm256_unpacklo_epi16(va, vb), w));
                        hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(_mm256_unpackhi_epi16(va, vb), w));
                    }
                }
            }
            j0 += 16;
        }
        // unpacklo/hi work per 128-bit half: lo[c] holds elements 16c+0..4 and 16c+8..12,
        // hi[c] 16c+4..8 and 16c+12..16.
        for c in 0..4 {
            let o = out.as_mut_ptr().add(16 * c) as *mut __m256i;
            let (o0, o1) = (_mm256_loadu_si256(o), _mm256_loadu_si256(o.add(1)));
            _mm256_storeu_si256(o, _mm256_add_epi32(o0, _mm256_permute2x128_si256::<0x20>(lo[c], hi[c])));
            _mm256_storeu_si256(o.add(1), _mm256_add_epi32(o1, _mm256_permute2x128_si256::<0x31>(lo[c], hi[c])));
        }
    }

    /// [`head_values`] with AVX-512 VNNI: a key's 64 values are two 32-element vectors, and a
    /// pair of keys goes into the sums by one unpack and one `vpdpwssd` per half vector
    /// (the same products and sums as there: exact in any order). The 16-bit weight pairs of
    /// 16 keys are packed in one step (`pair_words` in vectors: `min(pn, 32767)`, and the
    /// rare `pn = 2^15` as a second word of 1); pairs go alternately to two sets of sums, so
    /// consecutive `vpdpwssd`s do not wait on each other.
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn head_values512(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
        let inv = super::recip(sum);
        let (ih, il, half) = (_mm256_set1_epi64x((inv >> 32) as i64), _mm256_set1_epi64x(inv as u32 as i64), _mm256_set1_epi32((sum / 2) as i32));
        // [lo of values 0..32, hi of 0..32, lo of 32..64, hi of 32..64], twice.
        let mut acc = [[_mm512_setzero_si512(); 4]; 2];
        let vp = v.as_ptr().add(off);
        let n = p.len();
        let pair = |acc: &mut [__m512i; 4], w: i32, j: usize| {
            if w == 0 {
                return;
            }
            let ra = vp.add(j * kvd);
            let rb = if j + 1 < n { vp.add((j + 1) * kvd) } else { ra }; // its weight is 0
            let w = _mm512_set1_epi32(w);
            for c in 0..2 {
                let va = _mm512_loadu_si512(ra.add(32 * c) as *const __m512i);
                let vb = _mm512_loadu_si512(rb.add(32 * c) as *const __m512i);
                acc[2 * c] = _mm512_dpwssd_epi32(acc[2 * c], _mm512_unpacklo_epi16(va, vb), w);
                acc[2 * c + 1] = _mm512_dpwssd_epi32(acc[2 * c + 1], _mm512_unpackhi_epi16(va, vb), w);
            }
        };
        let max15 = _mm512_set1_epi32(32767);
        let (mut main, mut carry) = ([0i32; 8], [0i32; 8]);
        let mut j0 = 0;
        while j0 < n {
            let m = (n - j0).min(16);
            let x = if m == 16 {
                let lo = p_norm8(_mm256_loadu_si256(p.as_ptr().add(j0) as *const __m256i), half, ih, il);
                let hi = p_norm8(_mm256_loadu_si256(p.as_ptr().add(j0 + 8) as *const __m256i), half, ih, il);
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
            } else {
                let mut pn = [0u32; 16]; // 0 past the end: no weight
                for (o, &pj) in pn.iter_mut().zip(&p[j0..]) {
                    *o = super::p_norm(pj, sum, inv);
                }
                _mm512_loadu_si512(pn.as_ptr() as *const __m512i)
            };
            // (pn_j, pn_j+1) as the halves of word j/2 (each ≤ 2^15, so min and >> 15 split it).
            _mm256_storeu_si256(main.as_mut_ptr() as *mut __m256i, _mm512_cvtepi32_epi16(_mm512_min_epu32(x, max15)));
            let big = _mm512_cmpgt_epu32_mask(x, max15);
            for i in (0..8).step_by(2) {
                let [a0, a1] = &mut acc;
                pair(a0, main[i], j0 + 2 * i);
                pair(a1, main[i + 1], j0 + 2 * i + 2);
            }
            if big != 0 {
                _mm256_storeu_si256(carry.as_mut_ptr() as *mut __m256i, _mm512_cvtepi32_epi16(_mm512_srli_epi32::<15>(x)));
                for (i, &w) in carry.iter().enumerate() {
                    pair(&mut acc[0], w, j0 + 2 * i);
                }
            }
            j0 += 16;
        }
        // unpacklo/hi work per 128-bit lane: lo holds elements 8i+0..4 of each lane i, hi 8i+4..8.
        let lo_hi = |c: usize| (_mm512_add_epi32(acc[0][2 * c], acc[1][2 * c]), _mm512_add_epi32(acc[0][2 * c + 1], acc[1][2 * c + 1]));
        let first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
        let second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
        for c in 0..2 {
            let (lo, hi) = lo_hi(c);
            let o = out.as_mut_ptr().add(32 * c) as *mut __m512i;
            _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), _mm512_permutex2var_epi32(lo, first, hi)));
            _mm512_storeu_si512(o.add(1), _mm512_add_epi32(_mm512_loadu_si512(o.add(1)), _mm512_permutex2var_epi32(lo, second, hi)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{dot_q4, dot_q8, matmul_q4_with, matmul_q8_with, quantize, CpuQ4, CpuQ8};
    use super::*;
    use crate::pack::{Q4Matrix, Q8Matrix};
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn act(r: &mut Rng, tokens: usize, width: usize, extreme: bool) -> QAct {
        let z: Vec<i32> = (0..tokens * width).map(|i| if extreme { [i32::MAX, i32::MIN, 1, -1][i % 4] } else { (r.next_u64() as i32) >> (r.below(28) as u32) }).collect();
        quantize(&z, width, 3)
    }

    fn q4_matrix(r: &mut Rng, rows: usize, cols: usize, extreme: bool) -> Q4Matrix {
        let nb = cols / 32;
        let ext = |r: &mut Rng, v: i16| if extreme { [v, -v][r.below(2) as usize] } else { (r.below(2 * v as u64 + 1) as i32 - v as i32) as i16 };
        Q4Matrix {
            rows,
            cols,
            nib: (0..rows * cols / 2).map(|_| if extreme { [0xF0, 0x0F, 0xFF][r.below(3) as usize] } else { r.below(256) as u8 }).collect(),
            d: (0..rows * nb).map(|_| ext(r, 8191)).collect(),
            m: (0..rows * nb).map(|_| ext(r, 8191)).collect(),
            e: (0..rows).map(|_| r.below(30) as i8).collect(),
        }
    }

    fn q8_matrix(r: &mut Rng, rows: usize, cols: usize, extreme: bool) -> Q8Matrix {
        let nb = cols / 32;
        Q8Matrix {
            rows,
            cols,
            q: (0..rows * cols).map(|_| if extreme { -128 } else { r.next_u64() as i8 }).collect(),
            d: (0..rows * nb).map(|_| if extreme { [2047, -2047][r.below(2) as usize] } else { (r.below(4095) as i32 - 2047) as i16 }).collect(),
            e: (0..rows).map(|_| r.below(30) as i8).collect(),
        }
    }

    /// Every implementation that runs here against `dot_q4` on the pack's matrix, for every
    /// output (full groups, tail rows, every token count mod 4).
    fn check_q4(w: &Q4Matrix, x: &QAct, frac_out: i32) {
        let (rows, cols, nb) = (w.rows, w.cols, w.cols / 32);
        let cw = CpuQ4::new(w);
        let isas = Isa::available();
        let got: Vec<Vec<i32>> = isas.iter().map(|&isa| matmul_q4_with(isa, &cw, x, frac_out)).collect();
        let want = |row: usize, t: usize| dot_q4(&w.nib[row * cols / 2..(row + 1) * cols / 2], &w.d[row * nb..(row + 1) * nb], &w.m[row * nb..(row + 1) * nb], w.e[row] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], &x.sum[t * nb..(t + 1) * nb], x.exp[t], frac_out);
        for row in 0..rows {
            for t in 0..x.tokens {
                let want = want(row, t);
                for (isa, g) in isas.iter().zip(&got) {
                    assert_eq!(g[t * rows + row], want, "{isa:?} row {row} token {t}");
                }
            }
        }
        // Two groups per call at any token count (the matmul takes pairs only for batches).
        for &isa in &isas {
            for g in (0..(rows / GROUP).saturating_sub(1)).step_by(2) {
                let mut o = vec![0; 2 * GROUP * x.tokens];
                groups_q4(isa, &cw, g, 2, x, frac_out, &mut o);
                for (i, t) in (0..2 * GROUP).flat_map(|i| (0..x.tokens).map(move |t| (i, t))) {
                    assert_eq!(o[i * x.tokens + t], want(GROUP * g + i, t), "{isa:?} pair {g} row {i} token {t}");
                }
            }
        }
    }

    fn check_q8(w: &Q8Matrix, x: &QAct, frac_out: i32) {
        let (rows, cols, nb) = (w.rows, w.cols, w.cols / 32);
        let cw = CpuQ8::new(w);
        let isas = Isa::available();
        let got: Vec<Vec<i32>> = isas.iter().map(|&isa| matmul_q8_with(isa, &cw, x, frac_out)).collect();
        let want = |row: usize, t: usize| dot_q8(&w.q[row * cols..(row + 1) * cols], &w.d[row * nb..(row + 1) * nb], w.e[row] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], x.exp[t], frac_out);
        for row in 0..rows {
            for t in 0..x.tokens {
                let want = want(row, t);
                for (isa, g) in isas.iter().zip(&got) {
                    assert_eq!(g[t * rows + row], want, "{isa:?} row {row} token {t}");
                }
            }
        }
        for &isa in &isas {
            for g in (0..(rows / GROUP).saturating_sub(1)).step_by(2) {
                let mut o = vec![0; 2 * GROUP * x.tokens];
                groups_q8(isa, &cw, g, 2, x, frac_out, &mut o);
                for (i, t) in (0..2 * GROUP).flat_map(|i| (0..x.tokens).map(move |t| (i, t))) {
                    assert_eq!(o[i * x.tokens + t], want(GROUP * g + i, t), "{isa:?} pair {g} row {i} token {t}");
                }
            }
        }
    }

    #[test]
    fn isas_that_run_here() {
        let isas = Isa::available();
        assert_eq!(isas[0], Isa::Portable);
        assert!(isas.contains(&Isa::best()));
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(target_feature = "relaxed-simd")))]
        assert_eq!(Isa::best(), Isa::Simd128);
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
        assert_eq!(Isa::best(), Isa::RelaxedSimd);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            Isa::best(),
            match (
                std::arch::is_x86_feature_detected!("avx2"),
                std::arch::is_x86_feature_detected!("avxvnni"),
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vnni"),
            ) {
                (true, _, true) => Isa::Avx512Vnni,
                (true, true, false) => Isa::AvxVnni,
                (true, false, false) => Isa::Avx2,
                _ => Isa::Portable,
            }
        );
    }

    /// The layout keeps every weight (`CpuQ4::block` reads the pack's bytes back).
    #[test]
    fn q4_layout_round_trips() {
        let mut r = Rng(20);
        let w = q4_matrix(&mut r, 19, 96, false);
        let cw = CpuQ4::new(&w);
        for g in 0..2 {
            for i in 0..GROUP {
                for b in 0..3 {
                    let rr = g * GROUP + i;
                    assert_eq!(cw.block(g, i, b)[..], w.nib[rr * 48 + 16 * b..rr * 48 + 16 * (b + 1)]);
                }
            }
        }
    }

    #[test]
    fn q4_engine_layout_equals_scalar() {
        let mut r = Rng(21);
        for (rows, cols, tokens, extreme) in [(21, 1536, 9, false), (8, 64, 4, true), (16, 576, 13, false), (11, 1536, 7, true), (3, 288, 1, false), (16, 96, 2, false), (24, 576, 6, false)] {
            let w = q4_matrix(&mut r, rows, cols, extreme);
            let x = act(&mut r, tokens, cols, extreme);
            check_q4(&w, &x, 10);
        }
    }

    #[test]
    fn q8_engine_layout_equals_scalar() {
        let mut r = Rng(22);
        for (rows, cols, tokens, extreme) in [(22, 1024, 8, false), (8, 1024, 5, true), (13, 576, 11, false), (16, 1024, 2, true), (9, 96, 1, false), (16, 576, 7, false)] {
            let w = q8_matrix(&mut r, rows, cols, extreme);
            let cw = CpuQ8::new(&w);
            for row in 0..rows {
                for c in 0..cols {
                    assert_eq!(cw.at(row, c), (w.q[row * cols + c], w.d[row * (cols / 32) + c / 32]));
                }
                assert_eq!(cw.exp(row), w.e[row]);
            }
            let x = act(&mut r, tokens, cols, extreme);
            check_q8(&w, &x, 10);
        }
    }

    /// The largest block terms of both signs in every lane: q = ±127 with a = 4096 (a row of
    /// ±127·2^20 quantises to that), nibbles 0 or 15, d and m ±8191 (Q4), w = −128 with
    /// d = ±2047 (Q8), output shifts that saturate both ways.
    #[test]
    fn kernels_at_the_extremes() {
        let cols = 1536;
        let big = 127 << 20;
        let z: Vec<i32> = (0..4 * cols).map(|i| [big, -big, big, big][(i / cols + i / 7) % 4]).collect();
        let x = quantize(&z, cols, 0);
        assert!(x.q.iter().all(|&q| q.unsigned_abs() == 127) && x.a.iter().all(|&a| a == 4096));
        for (nib, d, m) in [(0xFF, 8191, 8191), (0x00, -8191, 8191), (0xFF, -8191, -8191), (0x0F, 8191, -8191)] {
            let w = Q4Matrix { rows: 16, cols, nib: vec![nib; 16 * cols / 2], d: vec![d; 16 * 48], m: vec![m; 16 * 48], e: (0..16).map(|i| [0, 40, -30, 20][i % 4]).collect() };
            for f in [-20, 0, 10] {
                check_q4(&w, &x, f);
            }
        }
        let cols = 1024;
        let z: Vec<i32> = (0..5 * cols).map(|i| if (i / cols + i / 3) % 2 == 0 { big } else { -big }).collect();
        let x = quantize(&z, cols, 0);
        assert!(x.q.iter().all(|&q| q.unsigned_abs() == 127) && x.a.iter().all(|&a| a == 4096));
        for d in [2047, -2047] {
            let w = Q8Matrix { rows: 16, cols, q: vec![-128; 16 * cols], d: vec![d; 16 * 32], e: (0..16).map(|i| [0, 40, -30, 20][i % 4]).collect() };
            for f in [-20, 0, 10] {
                check_q8(&w, &x, f);
            }
        }
    }

    /// Attention loops: every implementation that runs here equals the portable one, on
    /// random and extreme keys, values and probabilities, long and short contexts.
    #[test]
    fn head_loops_agree() {
        let mut r = Rng(23);
        let (kvd, n_kv) = (192, 3);
        for (n, extreme) in [(1, false), (3, true), (37, false), (45, true), (64, true), (2049, false)] {
            let k: Vec<i16> = (0..n * kvd).map(|i| if extreme { [511, -511][i % 2] } else { (r.below(1023) as i32 - 511) as i16 }).collect();
            let k_exp: Vec<i32> = (0..n * n_kv).map(|i| if extreme { (i % 30) as i32 } else { r.below(22) as i32 }).collect();
            let v: Vec<i16> = (0..n * kvd).map(|i| if extreme { [i16::MAX, i16::MIN][i % 2] } else { r.next_u64() as i16 }).collect();
            let qi: Vec<i16> = (0..64).map(|i| if extreme { [511, -511, 511][i % 3] } else { (r.below(1023) as i32 - 511) as i16 }).collect();
            for kvh in 0..n_kv {
                for shift0 in [12, 0, -9, -40] {
                    let mut want = vec![0; n];
                    let wmax = head_scores(Isa::Portable, &qi, &k, &k_exp, kvd, n_kv, kvh, shift0, &mut want);
                    for isa in Isa::available() {
                        let mut got = vec![0; n];
                        assert_eq!(head_scores(isa, &qi, &k, &k_exp, kvd, n_kv, kvh, shift0, &mut got), wmax, "{isa:?}");
                        assert_eq!(got, want, "{isa:?} n {n} shift {shift0}");
                    }
                }
                // Probabilities as attention makes them: one 2^15, the rest ≤ 2^15 (many 0).
                let mut p: Vec<u32> = (0..n).map(|_| if extreme { 1 << 15 } else { [0, 1, r.below(1 << 15) as u32, 1 << 15][r.below(4) as usize] }).collect();
                p[n / 2] = 1 << 15;
                let sum = p.iter().sum::<u32>();
                // The probabilities of these scores, every implementation against the portable one.
                let table = crate::tables::exp2_table(8, 15);
                for shift0 in [12, 4, -9] {
                    let mut sc = vec![0; n];
                    let tmax = head_scores(Isa::Portable, &qi, &k, &k_exp, kvd, n_kv, kvh, shift0, &mut sc);
                    let mut pw = vec![0; n];
                    let sw = head_probs(Isa::Portable, &sc, tmax, &table, &mut pw);
                    for isa in Isa::available() {
                        let mut pg = vec![9; n];
                        assert_eq!(head_probs(isa, &sc, tmax, &table, &mut pg), sw, "{isa:?}");
                        assert_eq!(pg, pw, "{isa:?} n {n}");
                    }
                }
                // They add to `out`: start from something other than zeros.
                let start: Vec<i32> = (0..64).map(|i| i * 7 - 200).collect();
                let mut want = start.clone();
                head_values(Isa::Portable, &p, &v, kvd, kvh * 64, sum, &mut want);
                for isa in Isa::available() {
                    let mut got = start.clone();
                    head_values(isa, &p, &v, kvd, kvh * 64, sum, &mut got);
                    assert_eq!(got, want, "{isa:?} n {n}");
                }
            }
        }
    }

    // Random shapes and values (native only: proptest does not build for wasm32).
    #[cfg(not(target_arch = "wasm32"))]
    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn q4_any_shape(seed in any::<u64>(), rows in 1usize..40, nb in 1usize..49, tokens in 1usize..20, extreme in any::<bool>(), frac in -8i32..16) {
                let mut r = Rng(seed);
                let w = q4_matrix(&mut r, rows, nb * 32, extreme);
                let x = act(&mut r, tokens, nb * 32, extreme);
                check_q4(&w, &x, frac);
            }

            #[test]
            fn q8_any_shape(seed in any::<u64>(), rows in 1usize..40, nb in 1usize..33, tokens in 1usize..20, extreme in any::<bool>(), frac in -8i32..16) {
                let mut r = Rng(seed);
                let w = q8_matrix(&mut r, rows, nb * 32, extreme);
                let x = act(&mut r, tokens, nb * 32, extreme);
                check_q8(&w, &x, frac);
            }
        }
    }
}
