//! Integer logits → integer frequency table: the one place where the coder's probabilities
//! are decided.
//!
//! Input: one row of logits in Q10 *log2* units (the final norm's gain carries log2(e)).
//! Output: `freq[v] ≥ 1` for every symbol, `Σ freq = 2^24` exactly.
//!
//! Steps (all integer; `shaders/freq.wgsl` will be the same algorithm):
//! 1. `d_v = max − l_v` (≥ 0), split into an integer part `n = d >> 10` and a fraction
//!    `f = d & 1023`; `e_v = exp_table[f] >> n` with `exp_table[f] = round(2^24 · 2^(-f/1024))`,
//!    so `e_v ≈ 2^24 · 2^(l_v − max)`, the top symbol has exactly 2^24, and symbols more than
//!    24 octaves below the top get 0 (they still get frequency 1 below).
//! 2. `S = Σ e_v` (≤ 49152·2^24 < 2^40: a [`Wide`] sum).
//! 3. A reciprocal with ≥ 29 significant bits: `S'' = (S >> sh) + 1` with `sh = max(0, bitlen(S) − 32)`
//!    (rounded *up*, so the table never overshoots), `k = bitlen(S'') + 6`,
//!    `R = floor(B · 2^k / S'')` with `B = 2^24 − vocab`. `R < 2^31` by the choice of `k`.
//! 4. `freq_v = 1 + floor(e_v · R / 2^(k + sh))` (a 55-bit product, [`Wide`]); then
//!    `Σ freq ≤ vocab + B = 2^24`, and the remainder goes to the first top symbol.

use crate::wide::{self, Wide};

/// The frequency tables sum to `2^FREQ_BITS`.
pub const FREQ_BITS: u32 = 24;
pub const FREQ_TOTAL: u32 = 1 << FREQ_BITS;
/// Fraction bits of the logits (log2 units).
pub const LOGIT_FRAC: i32 = 10;

/// Fills `freq` (len = vocab) from `logits` (len = vocab). `exp_table` has 1024 entries ≤ 2^24.
pub fn freq_table(logits: &[i32], exp_table: &[u32], freq: &mut [u32]) {
    debug_assert_eq!(logits.len(), freq.len());
    debug_assert_eq!(exp_table.len(), 1 << crate::tables::OUT_EXP_BITS);
    let vocab = logits.len() as u32;
    let mut max = i32::MIN;
    let mut top = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            max = l;
            top = i;
        }
    }
    let mut sum = Wide::ZERO;
    for (f, &l) in freq.iter_mut().zip(logits) {
        // l ≤ max, so the wrapping difference read as u32 is the exact non-negative distance.
        let d = max.wrapping_sub(l) as u32;
        let n = d >> crate::tables::OUT_EXP_BITS;
        let e = if n >= 32 {
            0
        } else {
            exp_table[(d & 1023) as usize] >> n
        };
        *f = e;
        sum = sum.add(Wide { hi: 0, lo: e });
    }
    let budget = FREQ_TOTAL - vocab;
    let sh = sum.bit_len_unsigned().saturating_sub(32);
    let s2 = sum.shr(sh).add(Wide { hi: 0, lo: 1 });
    let k = s2.bit_len_unsigned() + 6;
    let r = wide::div_shifted(budget, k, s2);
    let mut total = 0u32;
    for f in freq.iter_mut() {
        // e · R < 2^24 · 2^31; the shifted result is ≤ e·B/S < 2^24.
        *f = 1 + wide::mul_u32(*f, r).shr(k + sh).lo;
        total += *f;
    }
    freq[top] += FREQ_TOTAL - total;
}

/// Ideal code length in bits of `symbol` under `freq`, in f64 (reporting only; never fed back).
pub fn bits(freq: &[u32], symbol: u32) -> f64 {
    (FREQ_TOTAL as f64 / freq[symbol as usize] as f64).log2()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tables::{exp2_table, OUT_EXP_BITS, OUT_P_FRAC};

    /// The table of `logits` (also used by `adapt`'s tests).
    pub(crate) fn table(logits: &[i32]) -> Vec<u32> {
        let e = exp2_table(OUT_EXP_BITS, OUT_P_FRAC);
        let mut f = vec![0; logits.len()];
        freq_table(logits, &e, &mut f);
        f
    }

    /// A little deterministic generator (xorshift), for the online models' tests.
    pub(crate) fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// A valid table: every entry ≥ 1, the sum exactly 2^24.
    pub(crate) fn check(f: &[u32]) {
        assert!(f.iter().all(|&x| x >= 1));
        assert_eq!(f.iter().map(|&x| x as u64).sum::<u64>(), FREQ_TOTAL as u64);
    }

    #[test]
    fn sums_to_total_on_extremes() {
        let v = 49152;
        for logits in [
            vec![0; v],
            vec![i32::MAX; v],
            vec![i32::MIN; v],
            (0..v as i32)
                .map(|i| if i % 2 == 0 { i32::MIN } else { i32::MAX })
                .collect(),
            (0..v as i32).map(|i| i * 37 % 20000).collect(),
            (0..v as i32).map(|i| if i == 7 { 100 << 10 } else { 0 }).collect(),
        ] {
            check(&table(&logits));
        }
        check(&table(&[5, 5]));
    }

    #[test]
    fn uniform_is_uniform_and_peaked_is_peaked() {
        // Uniform: each symbol gets 1 + floor(2^24·B/S'') = total/n − 1; the top one the rest.
        let f = table(&vec![123; 1024]);
        assert!(f[1..].iter().all(|&x| x == FREQ_TOTAL / 1024 - 1), "{:?}", &f[..4]);
        let mut l = vec![0; 49152];
        l[3] = 40 << 10; // 2^40 times likelier than the rest: they all get the floor.
        let f = table(&l);
        assert_eq!(f[3], FREQ_TOTAL - 49151);
        assert!(f.iter().enumerate().all(|(i, &x)| i == 3 || x == 1));
    }

    #[test]
    fn close_to_exact_softmax() {
        // Logits spread over ~12 octaves: every frequency is within 2 units (the floor and the
        // +1) plus vocab/2^24 (the mass set aside for the floor of 1) plus 0.01 % of the exact
        // softmax times 2^24.
        let l: Vec<i32> = (0..4096).map(|i| (i * 7919) % 12288).collect();
        let f = table(&l);
        check(&f);
        let m = *l.iter().max().unwrap() as f64;
        let z: f64 = l.iter().map(|&x| ((x as f64 - m) / 1024.0).exp2()).sum();
        for (&x, &fi) in l.iter().zip(&f) {
            if x as f64 == m {
                continue; // the top symbol also receives the rounding remainder
            }
            let p = ((x as f64 - m) / 1024.0).exp2() / z;
            let exact = p * FREQ_TOTAL as f64;
            if fi as f64 != exact.max(1.0).round() {
                assert!(
                    (fi as f64 - exact).abs() <= 2.0 + exact * (1e-4 + 4096.0 / FREQ_TOTAL as f64),
                    "exact {exact} got {fi}"
                );
            }
        }
    }
}
