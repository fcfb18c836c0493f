//! The forward pass gives the same bits however it is scheduled: one batch or one token at a
//! time, any thread count; and the real model's tables are pinned by a golden hash.

use lmz::backend::cpu::CpuBackend;
use lmz::model::{forward, Fracs};
use lmz::pack::{hex, sha256, Model};
use lmz::tiny::{tiny_model, TinyShape};

mod common;

/// Frequency tables predicting the token after each position, from one batched pass.
fn batched(m: &Model, tokens: &[u32]) -> Vec<Vec<u32>> {
    let mut b = CpuBackend::new(m, tokens.len()).unwrap();
    let mut out = Vec::new();
    forward(&mut b, m.config(), &Fracs::new(&m.weights), tokens, 0, 0, &mut |_, f| {
        out.push(f.to_vec());
        Ok(())
    })
    .unwrap();
    out
}

/// The same, one token at a time through the KV cache, in chunks of `step`.
fn stepped(m: &Model, tokens: &[u32], step: usize) -> Vec<Vec<u32>> {
    let mut b = CpuBackend::new(m, tokens.len()).unwrap();
    let fr = Fracs::new(&m.weights);
    let mut out = Vec::new();
    for (i, c) in tokens.chunks(step).enumerate() {
        forward(&mut b, m.config(), &fr, c, i * step, 0, &mut |_, f| {
            out.push(f.to_vec());
            Ok(())
        })
        .unwrap();
    }
    out
}

fn tiny_tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut r = lmz::tiny::Rng(99);
    (0..n).map(|_| r.below(vocab as u64) as u32).collect()
}

#[test]
fn tiny_batched_equals_one_at_a_time_equals_any_chunking() {
    let m = tiny_model(1, TinyShape::default()).unwrap();
    let toks = tiny_tokens(100, m.config().vocab);
    let a = batched(&m, &toks);
    assert_eq!(a.len(), 100);
    assert_eq!(a, stepped(&m, &toks, 1));
    assert_eq!(a, stepped(&m, &toks, 7));
    // Each table sums to 2^24 with every symbol ≥ 1.
    for f in &a {
        assert!(f.iter().all(|&x| x >= 1));
        assert_eq!(f.iter().map(|&x| x as u64).sum::<u64>(), 1 << 24);
    }
}

#[test]
fn tiny_thread_count_does_not_change_bits() {
    let m = tiny_model(2, TinyShape { n_layers: 3, dim: 96, hidden: 160, n_heads: 6, n_kv_heads: 2, ctx: 64 }).unwrap();
    let toks = tiny_tokens(60, m.config().vocab);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| batched(&m, &toks));
    let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| batched(&m, &toks));
    assert_eq!(one, three);
}

#[test]
fn tiny_logits_from_and_context_overflow() {
    let m = tiny_model(3, TinyShape::default()).unwrap();
    let toks = tiny_tokens(20, m.config().vocab);
    let all = batched(&m, &toks);
    let mut b = CpuBackend::new(&m, 20).unwrap();
    let mut tail = Vec::new();
    forward(&mut b, m.config(), &Fracs::new(&m.weights), &toks, 0, 15, &mut |i, f| {
        tail.push((i, f.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(tail.len(), 5);
    for (i, f) in tail {
        assert_eq!(f, all[15 + i]);
    }
    let too_long = tiny_tokens(m.config().ctx + 1, m.config().vocab);
    let mut b = CpuBackend::new(&m, m.config().ctx).unwrap();
    let e = forward(&mut b, m.config(), &Fracs::new(&m.weights), &too_long, 0, 0, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code(), "LMZ_CONTEXT_OVERFLOW");
    let e = forward(&mut b, m.config(), &Fracs::new(&m.weights), &[9999], 0, 0, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code(), "LMZ_INVALID_ARGUMENT");
}

/// llama.cpp's tokens for the start of alice29 ("ALICE'S ADVENTURES IN WONDERLAND ...").
const ALICE_IDS: [u32; 16] = [2738, 16980, 1047, 9206, 15799, 23, 67, 5236, 48932, 42606, 5622, 408, 2154, 29738, 60, 12386];

#[test]
fn real_model_batched_equals_one_at_a_time_and_matches_golden() {
    let m = common::real_model();
    let mut toks = vec![m.config().bos];
    toks.extend_from_slice(&ALICE_IDS);
    let a = batched(&m, &toks);
    assert_eq!(a, stepped(&m, &toks, 1));
    let mut all = Vec::new();
    for f in &a {
        all.extend(f.iter().flat_map(|x| x.to_le_bytes()));
    }
    // Pinned: any change to the integer pipeline or the pack changes this hash.
    assert_eq!(hex(&sha256(&all)), GOLDEN_TABLES_SHA256, "frequency tables changed");
    // And the model predicts: the mean cost of these tokens is well below uniform (15.6 bits).
    let bits: f64 = a.iter().zip(&toks[1..]).map(|(f, &t)| lmz::freq::bits(f, t)).sum::<f64>() / ALICE_IDS.len() as f64;
    assert!(bits < 9.0, "{bits} bits/token");
}

const GOLDEN_TABLES_SHA256: &str = "e9812df58cbc8e614de9a5649a4a59ddfb83bd16f278068b132b355a68b34259";
