//! The forward pass gives the same bits however it is scheduled: one batch or one token at a
//! time, any thread count; and the real model's tables are pinned by a golden hash.

use lmz::backend::cpu::CpuBackend;
use lmz::model::{forward as forward_batch, forward_seq as forward, Batch, Fracs};
use lmz::pack::{hex, sha256, Model};
use lmz::tiny::{tiny_model, TinyShape};

mod common;

/// Frequency tables predicting the token after each position, from one batched pass.
fn batched(m: &Model, tokens: &[u32]) -> Vec<Vec<u32>> {
    let mut b = CpuBackend::new(m, tokens.len()).unwrap();
    let mut out = Vec::new();
    forward(
        &mut b,
        m.config(),
        &Fracs::new(&m.weights),
        tokens,
        0,
        0,
        &mut |_, f| {
            out.push(f.to_vec());
            Ok(())
        },
    )
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
    let m = tiny_model(
        2,
        TinyShape {
            n_layers: 3,
            dim: 96,
            hidden: 160,
            n_heads: 6,
            n_kv_heads: 2,
            ctx: 64,
            ..TinyShape::default()
        },
    )
    .unwrap();
    let toks = tiny_tokens(60, m.config().vocab);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| batched(&m, &toks));
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(|| batched(&m, &toks));
    assert_eq!(one, three);
}

#[test]
fn tiny_logits_from_and_context_overflow() {
    let m = tiny_model(3, TinyShape::default()).unwrap();
    let toks = tiny_tokens(20, m.config().vocab);
    let all = batched(&m, &toks);
    let mut b = CpuBackend::new(&m, 20).unwrap();
    let mut tail = Vec::new();
    forward(
        &mut b,
        m.config(),
        &Fracs::new(&m.weights),
        &toks,
        0,
        15,
        &mut |i, f| {
            tail.push((i, f.to_vec()));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(tail.len(), 5);
    for (i, f) in tail {
        assert_eq!(f, all[15 + i]);
    }
    let too_long = tiny_tokens(m.config().ctx + 1, m.config().vocab);
    let mut b = CpuBackend::new(&m, m.config().ctx).unwrap();
    let e = forward(
        &mut b,
        m.config(),
        &Fracs::new(&m.weights),
        &too_long,
        0,
        0,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert_eq!(e.code(), "LMZ_CONTEXT_OVERFLOW");
    let e = forward(
        &mut b,
        m.config(),
        &Fracs::new(&m.weights),
        &[9999],
        0,
        0,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert_eq!(e.code(), "LMZ_INVALID_ARGUMENT");
}

/// Several sequences in one engine, their rows interleaved in batches of any shape (a
/// prefill beside single-token steps, slots in any order), give each sequence exactly the
/// tables it gets alone.
#[test]
fn tiny_slots_in_lock_step_equal_each_sequence_alone() {
    let m = tiny_model(4, TinyShape::default()).unwrap();
    let fr = Fracs::new(&m.weights);
    let seqs: Vec<Vec<u32>> = (0..3)
        .map(|i| tiny_tokens(30 + 7 * i, m.config().vocab).into_iter().skip(i).collect())
        .collect();
    let alone: Vec<Vec<Vec<u32>>> = seqs.iter().map(|s| batched(&m, s)).collect();
    let mut b = CpuBackend::with_slots(&m, 3, 64).unwrap();
    let mut got: Vec<Vec<Vec<u32>>> = vec![Vec::new(); 3];
    let mut next = [0usize; 3];
    // Step k: slot 2 prefills 10 tokens first, then everybody advances 1–3 tokens, slots in
    // reverse order on odd steps.
    for k in 0.. {
        let mut batch = Batch::default();
        let mut owners = Vec::new();
        let order: Vec<usize> = if k % 2 == 1 { vec![2, 1, 0] } else { vec![0, 1, 2] };
        for &s in &order {
            let take = if k == 0 && s == 2 { 10 } else { 1 + (k + s) % 3 };
            let end = (next[s] + take).min(seqs[s].len());
            if end == next[s] {
                continue;
            }
            batch.push_seq(s, &seqs[s][next[s]..end], next[s], 0);
            owners.extend(std::iter::repeat_n(s, end - next[s]));
            next[s] = end;
        }
        if batch.is_empty() {
            break;
        }
        forward_batch(&mut b, m.config(), &fr, &batch, &mut |i, f| {
            got[owners[i]].push(f.to_vec());
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(got, alone);
    // Rows of one slot out of order, an unknown slot, a position past the cache: errors.
    for (slot, pos) in [(vec![0, 0], vec![5, 4]), (vec![3], vec![0]), (vec![1], vec![64])] {
        let batch = Batch {
            tokens: vec![1; slot.len()],
            slot,
            pos,
            logits: vec![0],
        };
        assert!(forward_batch(&mut b, m.config(), &fr, &batch, &mut |_, _| Ok(())).is_err());
    }
}

/// llama.cpp's tokens for the start of alice29 ("ALICE'S ADVENTURES IN WONDERLAND ...").
const ALICE_IDS: [u32; 16] = [
    2738, 16980, 1047, 9206, 15799, 23, 67, 5236, 48932, 42606, 5622, 408, 2154, 29738, 60, 12386,
];

#[test]
fn real_model_batched_equals_one_at_a_time_and_matches_golden() {
    let Some(m) = common::real_model() else { return };
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
    let bits: f64 = a
        .iter()
        .zip(&toks[1..])
        .map(|(f, &t)| lmz::freq::bits(f, t))
        .sum::<f64>()
        / ALICE_IDS.len() as f64;
    assert!(bits < 9.0, "{bits} bits/token");
}

const GOLDEN_TABLES_SHA256: &str = "e9812df58cbc8e614de9a5649a4a59ddfb83bd16f278068b132b355a68b34259";
