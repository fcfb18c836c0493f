//! Online token n-gram model mixed into the model's table (issue 9, "token-level n-gram
//! models for repeated text"), learned from the chunk's own tokens as they are coded.
//!
//! The model's (adapted) table `q` is the n-gram's last escape. For the contexts of orders
//! `1..=ORDERS` (the last `k` tokens) seen before in this chunk, with `n_k` occurrences,
//! `d_k` distinct followers and `c_k(v)` counts, Witten–Bell blending gives
//!
//! ```text
//! p_k(v) = (c_k(v) + d_k · p_{k−1}(v)) / (n_k + d_k),    p_0 = q
//!        = A · q(v) + s(v)                               (A = Π d_k / (n_k + d_k))
//! ```
//!
//! and the coded table is `(1 − λ) · q + λ · p_K = (1 − λ(1 − A)) · q + λ · s`, where `K`
//! is the longest order seen. `λ` is the posterior mean of seven fixed values
//! ([`LAMBDAS`], 0 to 1/2) under their code lengths so far in the token's class (the
//! longest order seen, its count up to 4, whether it was always followed by one token):
//! a Bayesian mixture, which for a family linear in `λ` is one table at the mean `λ`.
//! On text without repeats `λ` falls to about 0 and the table is `q` exactly.
//!
//! Measured in BENCHMARKS.md ("Online models on top of the LM"). A match model (LZP, the
//! longest earlier match's next token) was measured beside it offline and added nothing
//! the order-4 contexts do not already give on this corpus; it is not part of the format.
//!
//! All integer, on the host, so every engine gives the same tables (docs/FORMAT.md, "The
//! n-gram mixer"):
//! - weights, top order down: `G = 2^32`; for `k = K..1`: `W_k = ⌊G / (n_k + d_k)⌋`,
//!   `G = ⌊G · d_k / (n_k + d_k)⌋`; then `A = G` and `s(v) = Σ_k c_k(v) · W_k` (Q32);
//! - `λ` (Q16) from the class's code lengths `L_j` (Q16 bits):
//!   `w_j = exp2[(Δ_j >> 6) & 1023] >> (Δ_j >> 16)` with `Δ_j = L_j − min L` (zero from a
//!   shift of 25 on), `λ = ⌊Σ w_j λ_j / Σ w_j⌋`;
//! - `r(v) = 1 + ⌊(q(v) − 1) · M / 2^32⌋ + ⌊s(v) · λ · B / 2^48⌋` with `M = 2^32 − ⌊λ · (2^32
//!   − A) / 2^16⌋` and `B = 2^24 − vocab`; the sum is at most `2^24` and what the floors leave
//!   goes to the first symbol of largest `q`. With `λ = 0`, `r = q` exactly;
//! - after the token `t`: `L_j += 24 − log2 r_j(t)` (without the remainder; [`log2_q16`]),
//!   then every order's counts.

use std::collections::HashMap;

use crate::freq::FREQ_BITS;
use crate::tables::{exp2_table, OUT_EXP_BITS, OUT_P_FRAC};

/// The longest context, in tokens.
pub const ORDERS: usize = 4;
/// The mixing weights `λ_j` the mixture is over, Q16: 0, 1/64, 1/32, 1/16, 1/8, 1/4, 1/2.
pub const LAMBDAS: [u32; 7] = [0, 1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14, 1 << 15];
/// Fraction bits of `λ`.
const LAMBDA_FRAC: u32 = 16;
/// Fraction bits of the code lengths `L_j`.
const LOSS_FRAC: u32 = 16;
/// Classes: (longest order 1..=ORDERS) × (its count, capped at 4) × (one follower or more).
const CLASSES: usize = ORDERS * 4 * 2;
/// No link.
const NONE: u32 = u32::MAX;

/// `⌊2^16 · log2 x⌋` for `x ≥ 1`, by repeated squaring of the mantissa (integer only).
pub fn log2_q16(x: u32) -> u32 {
    debug_assert!(x >= 1);
    let b = 31 - x.max(1).leading_zeros();
    // The mantissa x / 2^b in [1, 2), Q30.
    let mut m = ((x as u64) << 30) >> b;
    let mut frac = 0u32;
    for i in (0..LOSS_FRAC).rev() {
        m = (m * m) >> 30;
        if m >= 2 << 30 {
            m >>= 1;
            frac |= 1 << i;
        }
    }
    (b << LOSS_FRAC) | frac
}

/// A context seen in this chunk: how often, and the first of its followers (a list in
/// [`NGram::edges`]).
#[derive(Clone, Copy)]
struct Node {
    n: u32,
    d: u32,
    head: u32,
}

/// One follower of a context: the token, its count, the next follower of the same context.
#[derive(Clone, Copy)]
struct Edge {
    token: u32,
    count: u32,
    next: u32,
}

/// The n-gram mixer of one sequence (one per chunk: it starts empty with every chunk).
///
/// Memory grows with the tokens coded: at most one context and one follower per order per
/// token (about 200 bytes per token), plus two tables of the vocabulary.
#[derive(Clone)]
pub struct NGram {
    vocab: usize,
    /// Context (up to [`ORDERS`] tokens, most recent first, packed 32 bits each, the rest
    /// all ones) → node.
    index: HashMap<u128, u32>,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// The last [`ORDERS`] tokens, most recent first, and how many there are.
    last: [u32; ORDERS],
    seen: usize,
    /// Code lengths (Q16 bits) of each `λ_j` per class.
    loss: Vec<[u64; LAMBDAS.len()]>,
    exp: Vec<u32>,
    // This token's state, from `apply` to `learn`.
    /// The class, when some context was seen.
    class: Option<usize>,
    /// The escape mass `A`, Q32.
    escape: u64,
    /// `s(v)` (Q32) for the symbols in `touched`; zero elsewhere.
    s: Vec<u64>,
    touched: Vec<u32>,
}

/// The context key of the `k` most recent tokens.
fn key(last: &[u32; ORDERS], k: usize) -> u128 {
    let mut key = u128::MAX;
    for (i, &t) in last[..k].iter().enumerate() {
        key &= !(0xFFFF_FFFFu128 << (32 * i));
        key |= (t as u128) << (32 * i);
    }
    key
}

impl NGram {
    /// An empty model over `vocab` symbols.
    pub fn new(vocab: usize) -> NGram {
        NGram {
            vocab,
            index: HashMap::new(),
            nodes: Vec::new(),
            edges: Vec::new(),
            last: [0; ORDERS],
            seen: 0,
            loss: vec![[0; LAMBDAS.len()]; CLASSES],
            exp: exp2_table(OUT_EXP_BITS, OUT_P_FRAC),
            class: None,
            escape: 1 << 32,
            s: vec![0; vocab],
            touched: Vec::new(),
        }
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The nodes of the contexts seen, order 1 first, up to the longest.
    fn matched(&self) -> ([u32; ORDERS], usize) {
        let mut m = [NONE; ORDERS];
        let mut top = 0;
        for k in 1..=self.seen.min(ORDERS) {
            match self.index.get(&key(&self.last, k)) {
                Some(&n) => {
                    m[k - 1] = n;
                    top = k;
                }
                None => break,
            }
        }
        (m, top)
    }

    /// `λ` (Q16) of a class: the posterior mean of [`LAMBDAS`].
    fn lambda(&self, class: usize) -> u64 {
        let l = &self.loss[class];
        let min = *l.iter().min().unwrap_or(&0);
        let (mut num, mut den) = (0u64, 0u64);
        for (&lj, &lam) in l.iter().zip(&LAMBDAS) {
            let d = lj - min;
            let shift = d >> LOSS_FRAC;
            if shift > OUT_P_FRAC as u64 {
                continue;
            }
            let w = (self.exp[((d >> (LOSS_FRAC - OUT_EXP_BITS)) & 1023) as usize] >> shift) as u64;
            num += w * lam as u64;
            den += w;
        }
        // den ≥ 2^24: the best λ has Δ = 0.
        num / den.max(1)
    }

    /// `M` of the formula: the share of `q`'s mass above the floor.
    fn m(&self, lambda: u64) -> u64 {
        (1u64 << 32) - ((lambda * ((1u64 << 32) - self.escape)) >> LAMBDA_FRAC)
    }

    /// The n-gram's part of `r(v)` beyond the scaled `q`.
    fn sparse(&self, s: u64, lambda: u64) -> u32 {
        let budget = (1u64 << FREQ_BITS) - self.vocab as u64;
        ((s as u128 * lambda as u128 * budget as u128) >> (32 + LAMBDA_FRAC)) as u32
    }

    /// The mixed table of `q` (`len = vocab`, `Σ = 2^24`, every entry ≥ 1), written to `r`.
    pub fn apply(&mut self, q: &[u32], r: &mut [u32]) {
        debug_assert!(q.len() == self.vocab && r.len() == q.len());
        debug_assert!(self.touched.is_empty());
        let (m, top) = self.matched();
        self.class = None;
        self.escape = 1 << 32;
        if top == 0 {
            r.copy_from_slice(q);
            return;
        }
        let t = self.nodes[m[top - 1] as usize];
        self.class = Some(((top - 1) * 4 + (t.n.min(4) as usize - 1)) * 2 + (t.d == 1) as usize);
        let mut g = 1u64 << 32;
        for k in (0..top).rev() {
            let node = self.nodes[m[k] as usize];
            let den = node.n as u64 + node.d as u64;
            let w = g / den;
            g = g * node.d as u64 / den;
            let mut e = node.head;
            while e != NONE {
                let edge = self.edges[e as usize];
                let s = &mut self.s[edge.token as usize];
                if *s == 0 {
                    self.touched.push(edge.token);
                }
                *s += edge.count as u64 * w;
                e = edge.next;
            }
        }
        self.escape = g;
        let lambda = self.lambda(self.class.unwrap_or(0));
        if lambda == 0 {
            r.copy_from_slice(q);
            return;
        }
        let mq = self.m(lambda);
        let mut total = 0u32;
        let mut best = (0usize, 0u32);
        for (i, (rv, &qv)) in r.iter_mut().zip(q).enumerate() {
            // (q − 1) · M < 2^24 · 2^32.
            *rv = 1 + (((qv - 1) as u64 * mq) >> 32) as u32;
            total += *rv;
            if qv > best.1 {
                best = (i, qv);
            }
        }
        for &v in &self.touched {
            let add = self.sparse(self.s[v as usize], lambda);
            r[v as usize] += add;
            total += add;
        }
        match (1u32 << FREQ_BITS).checked_sub(total) {
            Some(rest) => r[best.0] += rest,
            // Never (Σ s ≤ 2^32 − A while every count sum is its context's n, which cannot
            // saturate within the decoding-work bound); a valid table all the same.
            None => r.copy_from_slice(q),
        }
    }

    /// Learns `token`, just coded under [`NGram::apply`]'s table of `q`.
    pub fn learn(&mut self, q: &[u32], token: u32) {
        let Some(&qt) = q.get(token as usize) else { return };
        if let Some(class) = self.class {
            let st = self.s[token as usize];
            let mut l = self.loss[class];
            for (lj, &lam) in l.iter_mut().zip(&LAMBDAS) {
                let lam = lam as u64;
                let rt = 1 + (((qt.max(1) - 1) as u64 * self.m(lam)) >> 32) as u32 + self.sparse(st, lam);
                *lj += ((FREQ_BITS << LOSS_FRAC) - log2_q16(rt.min(1 << FREQ_BITS))) as u64;
            }
            self.loss[class] = l;
        }
        for &v in &self.touched {
            self.s[v as usize] = 0;
        }
        self.touched.clear();
        for k in 1..=self.seen.min(ORDERS) {
            let n = *self.index.entry(key(&self.last, k)).or_insert_with(|| {
                self.nodes.push(Node { n: 0, d: 0, head: NONE });
                self.nodes.len() as u32 - 1
            }) as usize;
            let mut e = self.nodes[n].head;
            while e != NONE && self.edges[e as usize].token != token {
                e = self.edges[e as usize].next;
            }
            if e == NONE {
                self.edges.push(Edge {
                    token,
                    count: 1,
                    next: self.nodes[n].head,
                });
                self.nodes[n].head = self.edges.len() as u32 - 1;
                self.nodes[n].d += 1;
            } else {
                // Saturating: a count cannot reach 2^32 within the decoding-work bound, but a
                // hostile file must never make it wrap to 0.
                let c = &mut self.edges[e as usize].count;
                *c = c.saturating_add(1);
            }
            self.nodes[n].n = self.nodes[n].n.saturating_add(1);
        }
        self.last.copy_within(0..ORDERS - 1, 1);
        self.last[0] = token;
        self.seen += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freq::tests::{check, rng, table};

    #[test]
    fn log2_is_exact_on_powers_and_close_elsewhere() {
        for b in 0..32 {
            assert_eq!(log2_q16(1 << b), b << 16);
        }
        for x in [3u32, 5, 1000, 65_535, 1 << 23 | 12345, u32::MAX] {
            let want = (x as f64).log2() * 65536.0;
            let got = log2_q16(x) as f64;
            assert!(
                got <= want + 1e-6 && want - got < 2.0 + want * 1e-9,
                "{x}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn an_empty_model_passes_the_table_unchanged() {
        let f = table(&(0..5000).map(|i| (i * 7919) % 9000).collect::<Vec<_>>());
        let mut g = NGram::new(f.len());
        let mut r = vec![0; f.len()];
        g.apply(&f, &mut r);
        assert_eq!(r, f);
        g.learn(&f, 17);
        // One token seen: its context has no follower yet.
        g.apply(&f, &mut r);
        assert_eq!(r, f);
    }

    #[test]
    fn tables_stay_valid_at_the_limits() {
        let mut seed = 0x9e3779b97f4a7c15;
        for vocab in [2usize, 3, 17, 1000, 49152] {
            for shape in 0..3 {
                let logits: Vec<i32> = (0..vocab)
                    .map(|i| match shape {
                        0 => 0,
                        1 => (rng(&mut seed) % 30000) as i32,
                        _ => {
                            if i == vocab / 2 {
                                40 << 10
                            } else {
                                0
                            }
                        }
                    })
                    .collect();
                let f = table(&logits);
                let mut g = NGram::new(vocab);
                let mut r = vec![0; vocab];
                // A few symbols over and over: long contexts, large counts, λ near 1/2.
                for step in 0..600 {
                    g.apply(&f, &mut r);
                    check(&r);
                    let t = if step % 50 == 49 {
                        rng(&mut seed) % vocab as u64
                    } else {
                        (step % 3) as u64 % vocab as u64
                    };
                    g.learn(&f, t as u32);
                }
                // The last token is predicted well above its model probability.
                g.apply(&f, &mut r);
                check(&r);
            }
        }
    }

    #[test]
    fn repeated_text_gets_cheap_and_new_text_costs_about_the_model() {
        // The model is uniform over 256 symbols (8 bits each). A 40-symbol phrase repeated:
        // after a few rounds the mixer should code it well under 8 bits per symbol.
        let f = table(&[0; 256]);
        let mut g = NGram::new(256);
        let mut r = vec![0; 256];
        let mut seed = 3u64;
        let phrase: Vec<u32> = (0..40).map(|_| (rng(&mut seed) % 256) as u32).collect();
        let (mut first, mut late) = (0.0, 0.0);
        for round in 0..20 {
            for &t in &phrase {
                g.apply(&f, &mut r);
                let b = crate::freq::bits(&r, t);
                if round == 0 {
                    first += b;
                } else if round >= 15 {
                    late += b;
                }
                g.learn(&f, t);
            }
        }
        assert!(first / 40.0 < 8.2, "first round {} bits per symbol", first / 40.0);
        assert!(late / 200.0 < 2.0, "late rounds {} bits per symbol", late / 200.0);
    }

    /// 300 steps over a 49,152-symbol vocabulary of skewed text: every table, hashed. Pins the
    /// format's arithmetic (docs/FORMAT.md, "The n-gram mixer").
    fn run() -> String {
        let mut seed = 12345u64;
        let mut g = NGram::new(49152);
        let mut r = vec![0; 49152];
        let mut all = Vec::new();
        for _ in 0..300 {
            let logits: Vec<i32> = (0..49152).map(|_| (rng(&mut seed) % 20000) as i32).collect();
            let f = table(&logits);
            g.apply(&f, &mut r);
            check(&r);
            all.extend(r.iter().flat_map(|x| x.to_le_bytes()));
            let t = if rng(&mut seed).is_multiple_of(5) {
                rng(&mut seed) % 49152
            } else {
                rng(&mut seed) % 6 * 1000
            };
            g.learn(&f, t as u32);
        }
        crate::pack::hex(&crate::pack::sha256(&all))
    }

    #[test]
    fn golden() {
        assert_eq!(
            run(),
            GOLDEN_NGRAM_SHA256,
            "the n-gram mixer's tables changed: a format change"
        );
    }

    const GOLDEN_NGRAM_SHA256: &str = "4cd922c131a43156489cad73cdf401c4fe51b86d2dc16ae773a044e60bd912a1";
}
