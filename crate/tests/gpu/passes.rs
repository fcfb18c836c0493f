//! Whole forward passes, CPU == GPU: tiny models batched, stepped, in several sequence slots
//! and with the sliding window; typed errors; the real model on a short text.

use crate::common;
use crate::gpu;
use lmz::backend::cpu::CpuBackend;
use lmz::backend::gpu::GpuBackend;
use lmz::backend::Backend as _;
use lmz::container::{Codec, ModelUse, Options};
use lmz::eval::{score, KvMode, Policy};
use lmz::model::{forward, forward_seq, Batch, Fracs};
use lmz::pack::Model;
use lmz::tiny::{tiny_model, Rng, TinyShape};

fn tables_of<B: lmz::backend::Backend>(b: &mut B, m: &Model, batches: &[Batch]) -> Vec<Vec<u32>> {
    let fr = Fracs::new(&m.weights);
    let mut out = Vec::new();
    for batch in batches {
        forward(b, m.config(), &fr, batch, &mut |_, f| {
            out.push(f.to_vec());
            Ok(())
        })
        .unwrap();
    }
    out
}

fn seq_batches(tokens: &[u32], step: usize) -> Vec<Batch> {
    tokens
        .chunks(step)
        .enumerate()
        .map(|(i, c)| {
            let mut b = Batch::default();
            b.push_seq(0, c, i * step, 0);
            b
        })
        .collect()
}

fn gpu_backend(m: &Model, slots: usize, cache_len: usize) -> Option<GpuBackend> {
    let g = gpu()?;
    Some(GpuBackend::on(g, m, slots, cache_len).unwrap())
}

#[test]
fn tiny_model_cpu_equals_gpu_batched_and_stepped() {
    for (seed, shape) in [
        (1, TinyShape::default()),
        (
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
        ),
    ] {
        let m = tiny_model(seed, shape).unwrap();
        let n = 60.min(m.config().ctx);
        let mut r = Rng(seed);
        let toks: Vec<u32> = (0..n).map(|_| r.below(m.config().vocab as u64) as u32).collect();
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        let mut cb = CpuBackend::new(&m, n).unwrap();
        let want = tables_of(&mut cb, &m, &seq_batches(&toks, n));
        assert_eq!(want.len(), n);
        assert_eq!(tables_of(&mut gb, &m, &seq_batches(&toks, n)), want, "batched");
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        assert_eq!(
            tables_of(&mut gb, &m, &seq_batches(&toks, 1)),
            want,
            "one token at a time"
        );
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        assert_eq!(tables_of(&mut gb, &m, &seq_batches(&toks, 7)), want, "chunks of 7");
        // Logits and frequency tables 5 rows at a time, attention in chunks of rows too.
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        gb.gpu().set_chunk_bytes(5 * m.config().vocab * 4);
        assert_eq!(tables_of(&mut gb, &m, &seq_batches(&toks, n)), want, "small chunks");
    }
}

/// Three sequences in lock-step: a prefill of each one's first half (wanting only some rows),
/// then the rest one token per sequence per batch.
fn lockstep_batches(m: &Model) -> Vec<Batch> {
    let mut r = Rng(5);
    let seqs: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            (0..20 + 5 * i)
                .map(|_| r.below(m.config().vocab as u64) as u32)
                .collect()
        })
        .collect();
    let mut batches = Vec::new();
    let mut b = Batch::default();
    for (s, q) in seqs.iter().enumerate() {
        b.push_seq(s, &q[..10], 0, 3 + s);
    }
    batches.push(b);
    for i in 10..30 {
        let mut b = Batch::default();
        for (s, q) in seqs.iter().enumerate() {
            if i < q.len() {
                b.push_seq(s, &q[i..i + 1], i, 0);
            }
        }
        batches.push(b);
    }
    batches
}

#[test]
fn tiny_model_slots_and_gathered_rows() {
    let m = tiny_model(3, TinyShape::default()).unwrap();
    let batches = lockstep_batches(&m);
    let mut cb = CpuBackend::with_slots(&m, 3, 32).unwrap();
    let want = tables_of(&mut cb, &m, &batches);
    let Some(mut gb) = gpu_backend(&m, 3, 32) else { return };
    assert_eq!(tables_of(&mut gb, &m, &batches), want);
}

/// The browser's CPU engine opens with one slot and re-sizes its KV cache for a file of
/// several chunks (`set_slots`): after a first use with one slot, three slots give the tables
/// of a fresh three-slot engine; 0 slots are refused.
#[test]
fn cpu_set_slots_equals_a_fresh_engine() {
    let m = tiny_model(3, TinyShape::default()).unwrap();
    let batches = lockstep_batches(&m);
    let want = tables_of(&mut CpuBackend::with_slots(&m, 3, 32).unwrap(), &m, &batches);
    let mut b = CpuBackend::with_slots(&m, 1, 32).unwrap();
    let mut first = Batch::default();
    first.push_seq(0, &[1, 2, 3, 4, 5], 0, 1);
    tables_of(&mut b, &m, &[first]);
    b.set_slots(3).unwrap();
    assert_eq!(b.slots(), 3);
    assert_eq!(tables_of(&mut b, &m, &batches), want);
    assert!(b.set_slots(0).is_err());
    b.set_slots(1).unwrap();
    assert_eq!(b.slots(), 1);
}

fn scored<B: lmz::backend::Backend>(b: &mut B, m: &Model, toks: &[u32], p: &Policy) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    score(
        b,
        m.config(),
        &Fracs::new(&m.weights),
        toks,
        p,
        &mut |i, f| {
            assert_eq!(i, out.len());
            out.push(f.to_vec());
            Ok(())
        },
        &mut |_, _| {},
    )
    .unwrap();
    out
}

/// The sliding window: later windows keep their context through `kv_shift`, on both engines
/// the same tables, and a multi-chunk file coded on the GPU is the CPU's file and decodes in
/// lock-step slots.
#[test]
fn tiny_model_sliding_window_cpu_equals_gpu() {
    let m = tiny_model(7, TinyShape::default()).unwrap();
    let cfg = m.config().clone();
    let mut r = Rng(9);
    let toks: Vec<u32> = (0..300).map(|_| r.below(cfg.vocab as u64) as u32).collect();
    for (window, stride) in [(40, 9), (64, 32), (33, 32)] {
        let p = Policy {
            window,
            stride,
            start: cfg.doc_start,
            kv: KvMode::Shift,
            adapt: false,
            ngram: false,
            chat: false,
        };
        let mut cb = CpuBackend::new(&m, window).unwrap();
        let want = scored(&mut cb, &m, &toks, &p);
        assert_eq!(want.len(), toks.len());
        let Some(mut gb) = gpu_backend(&m, 1, window) else {
            return;
        };
        assert!(
            scored(&mut gb, &m, &toks, &p) == want,
            "window {window}, stride {stride}"
        );
        // The first window is the recomputing policy's; later ones differ where context is
        // kept (window 33, stride 32 keeps none: the same tables).
        let mut cb = CpuBackend::new(&m, window).unwrap();
        let recomputed = scored(
            &mut cb,
            &m,
            &toks,
            &Policy {
                kv: KvMode::Recompute,
                ..p
            },
        );
        assert!(recomputed[..window] == want[..window]);
        assert!(
            (recomputed == want) == (window - stride - 1 == 0),
            "window {window}, stride {stride}"
        );
    }
    let codec = Codec::new(&m).unwrap();
    let text: Vec<u8> = (0..1200).map(|i| b"the thin anthem and a note\n"[i % 27]).collect();
    let opts = Options {
        model: ModelUse::Force,
        chunk_tokens: 150,
        compact: false,
        ..Options::default()
    };
    let mut cb = CpuBackend::with_slots(&m, 1, cfg.ctx).unwrap();
    let file = codec.compress(&mut cb, &text, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(lmz::container::info(&file).unwrap().kv, KvMode::Shift);
    let Some(mut gb) = gpu_backend(&m, 3, cfg.ctx) else {
        return;
    };
    assert!(codec.compress(&mut gb, &text, &opts, &mut |_, _| {}).unwrap() == file);
    assert!(codec.decompress(&mut gb, &file, &mut |_, _| {}).unwrap() == text);
}

#[test]
fn tiny_model_errors_are_typed() {
    let m = tiny_model(4, TinyShape::default()).unwrap();
    let Some(mut gb) = gpu_backend(&m, 1, 16) else { return };
    let fr = Fracs::new(&m.weights);
    let e = forward_seq(&mut gb, m.config(), &fr, &[9999], 0, 0, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code(), "LMZ_INVALID_ARGUMENT");
    let e = forward_seq(&mut gb, m.config(), &fr, &[1; 17], 0, 0, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code(), "LMZ_CONTEXT_OVERFLOW");
    assert!(matches!(
        GpuBackend::on(gpu().expect("opened above"), &m, 0, 16),
        Err(lmz::Error::InvalidArgument(_))
    ));
}

#[test]
fn real_model_cpu_equals_gpu_on_a_short_text() {
    let Some(m) = common::real_model() else { return };
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/alice-chapter1.txt")).unwrap();
    let tok = lmz::tokenizer::Tokenizer::new(&m.tokenizer).unwrap();
    let mut toks = vec![m.config().doc_start];
    toks.extend(tok.encode(&text).into_iter().take(199));
    let n = toks.len();
    let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
    let mut cb = CpuBackend::new(&m, n).unwrap();
    // A prefill of most of the text, then single steps through the KV cache.
    let split = n - 8;
    let mut batches = seq_batches(&toks[..split], split);
    for i in split..n {
        let mut b = Batch::default();
        b.push_seq(0, &toks[i..i + 1], i, 0);
        batches.push(b);
    }
    let want = tables_of(&mut cb, &m, &batches);
    assert_eq!(want.len(), n);
    let got = tables_of(&mut gb, &m, &batches);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(a == b, "table {i} differs");
    }
    assert_eq!(got.len(), want.len());
}

/// Many streams decoded in lock-step on the GPU engine — each in a KV region placed for it,
/// grown and moved as it decodes (a cache of one window for 20 streams) — and many inputs
/// coded together: the CPU engine's bytes.
#[test]
fn tiny_model_many_streams_cpu_equals_gpu() {
    let m = tiny_model(6, TinyShape::default()).unwrap();
    let codec = Codec::new(&m).unwrap();
    let texts: Vec<Vec<u8>> = (0..20)
        .map(|i| common::words_text(30 + 41 * i, 300 + i as u64))
        .collect();
    let refs: Vec<&[u8]> = texts.iter().map(|t| &t[..]).collect();
    let mut cpu = CpuBackend::with_slots(&m, 1, 128).unwrap();
    let Some(mut gpu) = gpu_backend(&m, 1, 128) else { return };
    let on_cpu = codec
        .compress_raw_many(&mut cpu, &refs, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    let on_gpu = codec
        .compress_raw_many(&mut gpu, &refs, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    let raws: Vec<Vec<u8>> = on_cpu.into_iter().map(Result::unwrap).collect();
    for (i, (g, c)) in on_gpu.iter().zip(&raws).enumerate() {
        assert_eq!(g.as_ref().unwrap(), c, "input {i} coded together");
    }
    let items: Vec<(&[u8], u64)> = raws.iter().zip(&texts).map(|(r, t)| (&r[..], t.len() as u64)).collect();
    let back = codec
        .decompress_raw_many(&mut gpu, &items, None, &mut |_, _| {})
        .unwrap();
    for (i, (b, t)) in back.iter().zip(&texts).enumerate() {
        assert_eq!(b.as_ref().unwrap(), t, "stream {i} decoded on the GPU");
    }
}
