//! Lookup tables the integer kernels need: RoPE cos/sin, exp2 for attention and for the
//! final softmax, SiLU.
//!
//! They are computed once, by the converter, and stored in the model pack (so every engine
//! reads the same integers and the pack fingerprint covers them). The converter computes
//! them with `libm`, a pure-Rust port of musl's math library: IEEE-754 basic operations
//! only, so the tables are the same on every platform. No engine ever calls a platform
//! `sin`/`exp`.

/// Fraction bits of the RoPE tables (values in [-2^14, 2^14]).
pub const ROPE_FRAC: u32 = 14;
/// Fraction bits of the attention exp2 table index (the score domain is Q8 log2 units).
pub const ATT_EXP_BITS: u32 = 8;
/// Attention probabilities are Q0.15.
pub const ATT_P_FRAC: u32 = 15;
/// Fraction bits of the final-softmax exp2 table index (logits are Q10 log2 units).
pub const OUT_EXP_BITS: u32 = 10;
/// Final-softmax weights are Q0.24.
pub const OUT_P_FRAC: u32 = 24;
/// SiLU table: step 2^-SILU_STEP_BITS on [-SILU_RANGE, SILU_RANGE], values Q10.
pub const SILU_STEP_BITS: u32 = 6;
pub const SILU_RANGE: i32 = 16;
pub const SILU_ENTRIES: usize = (2 * SILU_RANGE as usize) << SILU_STEP_BITS | 1;

fn round_i64(x: f64) -> i64 {
    libm::round(x) as i64
}

/// `cos`/`sin` of `pos · base^(-2i/head_dim)` for pos < ctx, i < head_dim/2, Q1.14, row-major [ctx, head_dim/2].
pub fn rope(ctx: usize, head_dim: usize, base: f64) -> (Vec<i16>, Vec<i16>) {
    let half = head_dim / 2;
    let theta: Vec<f64> = (0..half)
        .map(|i| libm::pow(base, -(2.0 * i as f64) / head_dim as f64))
        .collect();
    let one = (1i64 << ROPE_FRAC) as f64;
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for p in 0..ctx {
        for &t in &theta {
            let a = p as f64 * t;
            cos.push(round_i64(libm::cos(a) * one) as i16);
            sin.push(round_i64(libm::sin(a) * one) as i16);
        }
    }
    (cos, sin)
}

/// `round(2^frac · 2^(-f/2^bits))` for f in 0..2^bits.
pub fn exp2_table(bits: u32, frac: u32) -> Vec<u32> {
    let n = 1usize << bits;
    (0..n)
        .map(|f| round_i64(libm::exp2(frac as f64 - f as f64 / n as f64)) as u32)
        .collect()
}

/// `round(2^10 · silu(i / 64))` for i in -1024..=1024.
pub fn silu() -> Vec<i32> {
    let half = (SILU_ENTRIES / 2) as i32;
    (-half..=half)
        .map(|i| {
            let x = i as f64 / (1u32 << SILU_STEP_BITS) as f64;
            round_i64(x / (1.0 + libm::exp(-x)) * 1024.0) as i32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_expected_endpoints() {
        let e15 = exp2_table(ATT_EXP_BITS, ATT_P_FRAC);
        assert_eq!(e15.len(), 256);
        assert_eq!(e15[0], 1 << 15);
        assert!(e15.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(e15[255], 16428); // 2^15 · 2^(-255/256)
        let e24 = exp2_table(OUT_EXP_BITS, OUT_P_FRAC);
        assert_eq!(e24[0], 1 << 24);
        assert!(e24.windows(2).all(|w| w[0] > w[1]));
        let s = silu();
        assert_eq!(s.len(), SILU_ENTRIES);
        assert_eq!(s[SILU_ENTRIES / 2], 0);
        assert_eq!(*s.last().unwrap(), 16384); // silu(16) ≈ 16 - 1.8e-6
        let (c, sn) = rope(4, 64, 100000.0);
        assert_eq!(c[0], 1 << 14);
        assert_eq!(sn[0], 0);
        assert_eq!(c[32], 8852); // round(cos(1) · 2^14)
        assert_eq!(sn[32], 13787); // round(sin(1) · 2^14)
    }
}
