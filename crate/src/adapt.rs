//! Online adaptation on top of the model: a per-token bias in log space, learned from the
//! text as it is coded (issue 9, "an adaptive bias on the LM's distribution").
//!
//! The model's table `f` ([`crate::freq::freq_table`]: `f_v ≥ 1`, `Σ f = 2^24`) is
//! reweighted by `2^(b_v)` and renormalised; after each token `s` is coded under the adapted
//! table `q`, the bias takes one step of gradient descent on the token's code length:
//! `b_s += η`, and `b_v −= η · q_v / 2^24` for every `v`. A text that keeps using words the
//! model finds unlikely (a name, a spelling, a markup habit) soon costs less; the model's
//! over-confident guesses are damped. Measured in BENCHMARKS.md ("Online models on top of
//! the LM").
//!
//! All integer, on the host (the coder's side of every engine), so every engine and build
//! gives the same tables:
//! - `b_v` is Q24 log2 units (`i32`), clamped to ±[`BIAS_LIMIT`] (±8 octaves); `η` =
//!   [`RATE`].
//! - The multiplier: with `d_v = max(b) − b_v` (≤ 16 octaves by the clamp),
//!   `m_v = exp2[(d_v >> 14) & 1023] >> (d_v >> 24)` (the final softmax's table,
//!   `exp2[i] = round(2^24 · 2^(−i/1024))`), so `256 ≤ m_v ≤ 2^24`.
//! - Only the part of each frequency above the floor of 1 is reweighted:
//!   `w_v = (f_v − 1) · m_v` (< 2^48), `S = Σ w_v` (≥ 256·(2^24 − vocab) > 0), and
//!   `q_v = 1 + floor(w_v · R / 2^64)` with `R = floor((2^24 − vocab) · 2^64 / S)` (< 2^57);
//!   what the floors leave goes to the first symbol of largest `w`. With every `b_v` equal,
//!   `q = f` exactly, so the first token of a chunk is coded as without adaptation.
//! - The step: `b_s += η` (then clamped), `b_v −= floor(η · q_v / 2^24)` (then clamped).

use crate::freq::FREQ_BITS;
use crate::ngram::NGram;
use crate::tables::{exp2_table, OUT_EXP_BITS, OUT_P_FRAC};

/// Fraction bits of the bias (log2 units).
pub const BIAS_FRAC: u32 = 24;
/// The bias stays within ±8 octaves (a factor of 256 either way).
pub const BIAS_LIMIT: i32 = 8 << BIAS_FRAC;
/// The learning rate of the format: η in Q24 log2 units per token, `round(0.2 / ln 2 · 2^24)`
/// (0.2 nats; chosen by measurement: BENCHMARKS.md, "Online models on top of the LM").
pub const RATE: u32 = 4_840_881;

/// The adaptive bias of one sequence (one per chunk: it starts at zero with every chunk).
#[derive(Clone)]
pub struct Adapt {
    rate: u32,
    bias: Vec<i32>,
    /// `max(bias)`, kept by [`Adapt::learn`].
    max: i32,
    /// Whether every bias is still equal (then the table passes unchanged).
    flat: bool,
    exp: Vec<u32>,
    w: Vec<u64>,
}

impl Adapt {
    /// A fresh bias over `vocab` symbols, learning at `rate` (Q24 log2 units per token, at
    /// most [`BIAS_LIMIT`]).
    pub fn new(vocab: usize, rate: u32) -> Adapt {
        Adapt {
            rate: rate.min(BIAS_LIMIT as u32),
            bias: vec![0; vocab],
            max: 0,
            flat: true,
            exp: exp2_table(OUT_EXP_BITS, OUT_P_FRAC),
            w: vec![0; vocab],
        }
    }

    /// Back to zero, as at the start of a chunk.
    pub fn reset(&mut self) {
        self.bias.fill(0);
        self.max = 0;
        self.flat = true;
    }

    pub fn vocab(&self) -> usize {
        self.bias.len()
    }

    /// The adapted table of the model's table `f` (`len = vocab`, `Σ = 2^24`, every entry
    /// ≥ 1), written to `q`.
    pub fn apply(&mut self, f: &[u32], q: &mut [u32]) {
        debug_assert!(f.len() == self.bias.len() && q.len() == f.len());
        if self.flat {
            q.copy_from_slice(f);
            return;
        }
        let Adapt { bias, max, exp, w, .. } = self;
        let max = *max;
        // Per part: Σ w and the first largest w (index, value); combined in order below, so
        // the result does not depend on how the parts were scheduled.
        let parts = each_part(w, |at, w| {
            let mut sum = 0u64;
            let mut top = (at, 0u64);
            for (i, ((w, &fv), &b)) in w.iter_mut().zip(&f[at..]).zip(&bias[at..]).enumerate() {
                // b ≥ −LIMIT and max ≤ LIMIT: d < 2^28, a shift of at most 16.
                let d = max.wrapping_sub(b) as u32;
                let m = exp[((d >> (BIAS_FRAC - OUT_EXP_BITS)) & 1023) as usize] >> (d >> BIAS_FRAC).min(31);
                *w = fv.saturating_sub(1) as u64 * m as u64;
                sum += *w;
                if *w > top.1 {
                    top = (at + i, *w);
                }
            }
            (sum, top)
        });
        let mut sum = 0u64;
        let mut top = (0usize, 0u64);
        for (s, t) in parts {
            sum += s;
            if t.1 > top.1 {
                top = t;
            }
        }
        if sum == 0 {
            // Only for a table without any mass above the floor, which freq_table never makes.
            q.copy_from_slice(f);
            return;
        }
        let budget = (1u64 << FREQ_BITS) - f.len() as u64;
        let r = ((budget as u128) << 64) / sum as u128;
        let w = &self.w;
        let total: u32 = each_part(q, |at, q| {
            let mut total = 0u32;
            for (qv, &w) in q.iter_mut().zip(&w[at..]) {
                // w·R ≤ budget·2^64: the shifted product is ≤ budget.
                *qv = 1 + ((w as u128 * r) >> 64) as u32;
                total += *qv;
            }
            total
        })
        .into_iter()
        .sum();
        q[top.0] += (1u32 << FREQ_BITS) - total;
    }

    /// One step after `symbol` was coded under the adapted table `q`.
    pub fn learn(&mut self, q: &[u32], symbol: u32) {
        debug_assert_eq!(q.len(), self.bias.len());
        let rate = self.rate as u64;
        let mut max = each_part(&mut self.bias, |at, b| {
            let mut max = i32::MIN;
            for (b, &qv) in b.iter_mut().zip(&q[at..]) {
                // η·q < 2^28·2^24; the step is ≤ η.
                let step = ((rate * qv as u64) >> FREQ_BITS) as i32;
                *b = (*b - step).max(-BIAS_LIMIT);
                max = max.max(*b);
            }
            max
        })
        .into_iter()
        .fold(i32::MIN, i32::max);
        if let Some(b) = self.bias.get_mut(symbol as usize) {
            *b = (*b + self.rate as i32).min(BIAS_LIMIT);
            max = max.max(*b);
        }
        self.max = max;
        self.flat = false;
    }
}

/// The online models a policy stacks on the model's table `f`, for one sequence: the
/// adaptive bias (`f` → `q`), then the n-gram mixer ([`crate::ngram`], `q` → `r`). Each
/// token is coded under the last table, and both learn from it.
#[derive(Clone)]
pub struct Online {
    adapt: Option<Adapt>,
    ngram: Option<NGram>,
    q: Vec<u32>,
    r: Vec<u32>,
}

impl Online {
    /// The models of a policy over `vocab` symbols; `None` when it stacks none.
    pub fn new(vocab: usize, adapt: bool, ngram: bool) -> Option<Online> {
        (adapt || ngram).then(|| Online {
            adapt: adapt.then(|| Adapt::new(vocab, RATE)),
            ngram: ngram.then(|| NGram::new(vocab)),
            q: if adapt { vec![0; vocab] } else { Vec::new() },
            r: if ngram { vec![0; vocab] } else { Vec::new() },
        })
    }

    /// Codes one token: `code` gets the final table of the model's table `f` and returns the
    /// token (encoding: the known one; decoding: the one it read); then both models learn it.
    pub fn step(&mut self, f: &[u32], code: impl FnOnce(&[u32]) -> crate::Result<u32>) -> crate::Result<u32> {
        let Online { adapt, ngram, q, r } = self;
        let q: &[u32] = match adapt {
            Some(a) => {
                a.apply(f, q);
                q
            }
            None => f,
        };
        let t = match ngram {
            Some(g) => {
                g.apply(q, r);
                code(r)?
            }
            None => code(q)?,
        };
        if let Some(g) = ngram {
            g.learn(q, t);
        }
        if let Some(a) = adapt {
            a.learn(q, t);
        }
        Ok(t)
    }
}

/// Symbols per part of [`each_part`].
const PART: usize = 8192;

/// `f(start, part)` on each part of [`PART`] elements of `out`, in parallel when enabled;
/// the results in order.
fn each_part<A: Send, T: Send>(out: &mut [A], f: impl Fn(usize, &mut [A]) -> T + Sync + Send) -> Vec<T> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(PART)
            .enumerate()
            .map(|(k, o)| f(k * PART, o))
            .collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        out.chunks_mut(PART).enumerate().map(|(k, o)| f(k * PART, o)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freq::tests::{check, rng, table};

    #[test]
    fn flat_bias_is_the_identity() {
        let f = table(&(0..5000).map(|i| (i * 7919) % 9000).collect::<Vec<_>>());
        let mut a = Adapt::new(f.len(), RATE);
        let mut q = vec![0; f.len()];
        a.apply(&f, &mut q);
        assert_eq!(q, f);
        // Equal but not zero: the same exactly (a multiplier of 2^24 on every weight).
        a.flat = false;
        a.bias.fill(12345);
        a.max = 12345;
        a.apply(&f, &mut q);
        assert_eq!(q, f);
    }

    #[test]
    fn tables_stay_valid_at_the_limits() {
        let mut seed = 0x9e3779b97f4a7c15;
        for vocab in [2usize, 3, 17, 1000, 49152] {
            for shape in 0..4 {
                let logits: Vec<i32> = (0..vocab)
                    .map(|i| match shape {
                        0 => 0,
                        1 => (rng(&mut seed) % 30000) as i32,
                        2 => {
                            if i == vocab / 2 {
                                40 << 10
                            } else {
                                0
                            }
                        }
                        _ => -(i as i32) * 300,
                    })
                    .collect();
                let f = table(&logits);
                let mut a = Adapt::new(vocab, RATE);
                let mut q = vec![0; vocab];
                for step in 0..6 {
                    // Every bias at a limit, alternating, the most extreme case the clamp allows.
                    for (i, b) in a.bias.iter_mut().enumerate() {
                        *b = match (step + i) % 3 {
                            0 => BIAS_LIMIT,
                            1 => -BIAS_LIMIT,
                            _ => (rng(&mut seed) % (2 * BIAS_LIMIT as u64)) as i32 - BIAS_LIMIT,
                        };
                    }
                    a.max = *a.bias.iter().max().unwrap();
                    a.flat = false;
                    a.apply(&f, &mut q);
                    check(&q);
                    a.learn(&q, (rng(&mut seed) % vocab as u64) as u32);
                    assert!(a.bias.iter().all(|b| b.abs() <= BIAS_LIMIT));
                    assert_eq!(a.max, *a.bias.iter().max().unwrap());
                }
            }
        }
    }

    #[test]
    fn a_repeated_token_gets_cheaper_and_the_others_stay_in_proportion() {
        let f = table(
            &(0..1000)
                .map(|i| if i == 3 { 8 << 10 } else { i * 37 % 1000 })
                .collect::<Vec<_>>(),
        );
        let mut a = Adapt::new(f.len(), RATE);
        let mut q = vec![0; f.len()];
        let mut last = f[500];
        for _ in 0..50 {
            a.apply(&f, &mut q);
            check(&q);
            assert!(q[500] >= last, "{} < {last}", q[500]);
            last = q[500];
            a.learn(&q, 500);
        }
        assert!(q[500] > 8 * f[500], "{} vs {}", q[500], f[500]);
        // The others keep their order.
        assert!(q[3] > q[4] && f[3] > f[4]);
    }

    /// 40 steps over a 49,152-symbol vocabulary: every adapted table, hashed. Pins the
    /// format's arithmetic (docs/FORMAT.md, "The adaptive bias").
    fn run() -> String {
        let mut seed = 12345u64;
        let mut a = Adapt::new(49152, RATE);
        let mut q = vec![0; 49152];
        let mut all = Vec::new();
        for _ in 0..40 {
            let logits: Vec<i32> = (0..49152).map(|_| (rng(&mut seed) % 20000) as i32).collect();
            let f = table(&logits);
            a.apply(&f, &mut q);
            check(&q);
            all.extend(q.iter().flat_map(|x| x.to_le_bytes()));
            // Mostly a few favourite symbols, as text is.
            let s = if rng(&mut seed).is_multiple_of(4) {
                rng(&mut seed) % 49152
            } else {
                rng(&mut seed) % 8 * 1000
            };
            a.learn(&q, s as u32);
        }
        crate::pack::hex(&crate::pack::sha256(&all))
    }

    #[test]
    fn golden() {
        assert_eq!(
            run(),
            GOLDEN_ADAPT_SHA256,
            "the adaptive bias's tables changed: a format change"
        );
    }

    #[test]
    #[cfg(feature = "parallel")]
    fn the_same_on_any_thread_count() {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(pool.install(run), GOLDEN_ADAPT_SHA256, "{threads} threads");
        }
    }

    const GOLDEN_ADAPT_SHA256: &str = "6b9d5d0ccb2d85f3c6d84a68c93ac80f3b28fcf3558f762f97f59ba3bbd5e7ee";

    #[test]
    fn learning_lowers_the_code_length_of_a_skewed_source() {
        // The model says uniform over 64 symbols; the text uses 4 of them. Adaptation must
        // approach 2 bits per symbol from 6.
        let f = table(&[0; 64]);
        let mut a = Adapt::new(64, RATE);
        let mut q = vec![0; 64];
        let mut seed = 7u64;
        let mut late = 0.0;
        for i in 0..3000 {
            let s = (rng(&mut seed) % 4) as u32 * 16;
            a.apply(&f, &mut q);
            if i >= 2000 {
                late += crate::freq::bits(&q, s);
            }
            a.learn(&q, s);
        }
        let per = late / 1000.0;
        assert!(per < 2.6, "{per} bits per symbol");
    }
}
