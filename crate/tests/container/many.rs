//! Many items in one call (`Codec::decompress_many`, `decompress_raw_many`): each item's
//! result is exactly the one-item call's — its bytes, or its error — whatever the engine's
//! cache holds, and a corrupt item does not disturb the others.

use super::*;
use lmz::container::ModelUse;

/// Lengths from empty to several windows of the tiny model (its context is 128 positions).
const LENS: [usize; 9] = [0, 1, 7, 40, 120, 300, 700, 15, 2000];

fn raw(data: &[u8]) -> Vec<u8> {
    tiny()
        .codec
        .compress_raw(&mut backend(), data, ModelUse::Force, &mut |_, _| {})
        .unwrap()
}

fn texts() -> Vec<Vec<u8>> {
    LENS.iter()
        .enumerate()
        .map(|(i, &n)| common::words_text(n, 40 + i as u64))
        .collect()
}

/// The same error (its stable code) or the same bytes.
fn same(a: &lmz::Result<Vec<u8>>, b: &lmz::Result<Vec<u8>>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.code() == y.code(),
        _ => false,
    }
}

#[test]
fn raw_streams_decode_together_as_they_do_alone() {
    let texts = texts();
    let raws: Vec<Vec<u8>> = texts.iter().map(|t| raw(t)).collect();
    let mut items: Vec<(&[u8], u64)> = raws.iter().zip(&texts).map(|(r, t)| (&r[..], t.len() as u64)).collect();
    // A bit flip in one stream's payload, a wrong length, and junk.
    let mut flipped = raws[5].clone();
    flipped[10] ^= 0x10;
    items.push((&flipped, texts[5].len() as u64));
    items.push((&raws[4], texts[4].len() as u64 + 1));
    items.push((b"\xff\x00junk", 9));
    let alone: Vec<_> = items
        .iter()
        .map(|&(r, n)| tiny().codec.decompress_raw(&mut backend(), r, n, &mut |_, _| {}))
        .collect();
    for &(slots, cache) in &[(1usize, 128usize), (4, 128), (9, 128)] {
        let mut b = CpuBackend::with_slots(&tiny().model, slots, cache).unwrap();
        let many = tiny()
            .codec
            .decompress_raw_many(&mut b, &items, None, &mut |_, _| {})
            .unwrap();
        assert_eq!(many.len(), items.len());
        for (i, (m, a)) in many.iter().zip(&alone).enumerate() {
            assert!(same(m, a), "item {i} with {slots} × {cache}: {m:?} alone: {a:?}");
        }
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(many[i].as_ref().unwrap(), t, "item {i}");
        }
        assert!(many[LENS.len()].is_err() && many[LENS.len() + 1].is_err() && many[LENS.len() + 2].is_err());
        // The engine is back in its fixed layout: one stream alone decodes on it.
        let again = tiny()
            .codec
            .decompress_raw(&mut b, &raws[6], texts[6].len() as u64, &mut |_, _| {})
            .unwrap();
        assert_eq!(again, texts[6]);
    }
}

/// A cache far too small for the streams together makes them grow, move and wait for one
/// another (and some start again); each still decodes to its text.
#[test]
fn streams_share_a_small_cache_and_still_decode() {
    let texts: Vec<Vec<u8>> = (0..24)
        .map(|i| common::words_text(60 + 37 * i, 90 + i as u64))
        .collect();
    let raws: Vec<Vec<u8>> = texts.iter().map(|t| raw(t)).collect();
    let items: Vec<(&[u8], u64)> = raws.iter().zip(&texts).map(|(r, t)| (&r[..], t.len() as u64)).collect();
    let mut b = CpuBackend::with_slots(&tiny().model, 1, 128).unwrap();
    let mut reports = Vec::new();
    let many = tiny()
        .codec
        .decompress_raw_many(&mut b, &items, None, &mut |d, t| reports.push((d, t)))
        .unwrap();
    for (i, (m, t)) in many.iter().zip(&texts).enumerate() {
        assert_eq!(m.as_ref().unwrap(), t, "item {i}");
    }
    let total: u64 = texts.iter().map(|t| t.len() as u64).sum();
    assert_eq!(reports.last(), Some(&(total, total)));
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "progress never goes back");
}

#[test]
fn a_prefix_is_the_start_of_the_text_and_costs_fewer_steps() {
    let texts = texts();
    let raws: Vec<Vec<u8>> = texts.iter().map(|t| raw(t)).collect();
    let items: Vec<(&[u8], u64)> = raws.iter().zip(&texts).map(|(r, t)| (&r[..], t.len() as u64)).collect();
    let many = tiny()
        .codec
        .decompress_raw_many(&mut backend(), &items, Some(30), &mut |_, _| {})
        .unwrap();
    for (i, (m, t)) in many.iter().zip(&texts).enumerate() {
        let m = m.as_ref().unwrap();
        assert!(t.starts_with(m), "item {i}");
        assert!(m.len() >= 30.min(t.len()), "item {i}: {} bytes", m.len());
        if t.len() > 60 {
            assert!(m.len() < t.len(), "item {i} stopped early");
        }
    }
}

#[test]
fn files_of_every_form_decode_together_as_they_do_alone() {
    let texts = texts();
    let mut files: Vec<Vec<u8>> = texts.iter().map(|t| compress(t, &forced())).collect();
    files.push(compress(&texts[8], &multi(97))); // several chunks, in lock-step of their own
    files.push(compress(&texts[6], &multi(10_000))); // one chunk, full form
    files.push(compress(&random(300, 4), &always())); // stored
    files.push(compress(
        &texts[7],
        &Options {
            model: ModelUse::Never,
            ..Options::default()
        },
    )); // zstd or stored
    let mut bad = files[5].clone();
    let n = bad.len();
    bad[n - 3] ^= 0x40;
    files.push(bad);
    files.push(files[6][..files[6].len() - 2].to_vec());
    files.push(Vec::new());
    let refs: Vec<&[u8]> = files.iter().map(|f| &f[..]).collect();
    let alone: Vec<_> = refs.iter().map(|f| decompress(f)).collect();
    let mut b = CpuBackend::with_slots(&tiny().model, 3, 128).unwrap();
    let many = tiny().codec.decompress_many(&mut b, &refs, &mut |_, _| {}).unwrap();
    for (i, (m, a)) in many.iter().zip(&alone).enumerate() {
        assert!(same(m, a), "file {i}: {m:?} alone: {a:?}");
    }
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(many[i].as_ref().unwrap(), t, "file {i}");
    }
    let k = texts.len();
    assert_eq!(many[k].as_ref().unwrap(), &texts[8]);
    assert!(many[k + 4].is_err() && many[k + 5].is_err() && many[k + 6].is_err());
}

/// `compress_many` and `compress_raw_many` make, for every input, the bytes the one-item
/// call makes: short texts (coded together), long ones (several windows: alone), empty,
/// binary, under each model use and context policy.
#[test]
fn compressing_together_makes_the_bytes_of_one_at_a_time() {
    let mut inputs = texts();
    inputs.push(random(200, 8));
    inputs.push(random(3, 9));
    inputs.extend((0..12).map(|i| common::words_text(20 + 9 * i, 70 + i as u64)));
    let refs: Vec<&[u8]> = inputs.iter().map(|t| &t[..]).collect();
    let cfg = tiny().model.config();
    let policies = [
        None,
        Some(lmz::eval::Policy::shift_for(cfg)),
        Some(lmz::eval::Policy::recompute_for(cfg)),
    ];
    for model in [ModelUse::Auto, ModelUse::Force, ModelUse::Never] {
        for policy in policies {
            let opts = Options {
                model,
                policy,
                ..Options::default()
            };
            let mut b = CpuBackend::with_slots(&tiny().model, 2, 128).unwrap();
            let many = tiny()
                .codec
                .compress_many(&mut b, &refs, &opts, &mut |_, _| {})
                .unwrap();
            for (i, (m, t)) in many.iter().zip(&refs).enumerate() {
                let alone = tiny().codec.compress(&mut backend(), t, &opts, &mut |_, _| {}).unwrap();
                assert_eq!(m.as_ref().unwrap(), &alone, "input {i}, {model:?}, {policy:?}");
            }
        }
        let mut b = CpuBackend::with_slots(&tiny().model, 1, 128).unwrap();
        let many = tiny()
            .codec
            .compress_raw_many(&mut b, &refs, model, &mut |_, _| {})
            .unwrap();
        for (i, (m, t)) in many.iter().zip(&refs).enumerate() {
            let alone = tiny()
                .codec
                .compress_raw(&mut backend(), t, model, &mut |_, _| {})
                .unwrap();
            assert_eq!(m.as_ref().unwrap(), &alone, "raw input {i}, {model:?}");
        }
    }
}

/// Random damage to some items of a call — flipped bits, cuts, junk, a wrong length — never
/// panics and never changes what the other items get: each item gets exactly its result
/// alone. The cache holds one window, so the streams' regions grow, move and wait.
#[test]
fn damaged_items_never_disturb_the_others() {
    let texts: Vec<Vec<u8>> = (0..8)
        .map(|i| common::words_text(25 + 60 * i, 500 + i as u64))
        .collect();
    let raws: Vec<Vec<u8>> = texts.iter().map(|t| raw(t)).collect();
    let mut r = Rng(77);
    let mut b = CpuBackend::with_slots(&tiny().model, 1, 128).unwrap();
    for round in 0..40 {
        let mut items: Vec<(Vec<u8>, u64)> = raws.iter().cloned().zip(texts.iter().map(|t| t.len() as u64)).collect();
        for (raw, len) in items.iter_mut() {
            match r.below(6) {
                0 if !raw.is_empty() => {
                    let i = r.below(raw.len() as u64) as usize;
                    raw[i] ^= 1 << r.below(8);
                }
                1 => raw.truncate(r.below(raw.len() as u64 + 1) as usize),
                2 => raw.extend((0..r.below(5)).map(|_| r.below(256) as u8)),
                3 => *len = r.below(2 * *len + 2),
                _ => {}
            }
        }
        let refs: Vec<(&[u8], u64)> = items.iter().map(|(x, n)| (&x[..], *n)).collect();
        let many = tiny()
            .codec
            .decompress_raw_many(&mut b, &refs, None, &mut |_, _| {})
            .unwrap();
        for (i, (m, &(x, n))) in many.iter().zip(&refs).enumerate() {
            let alone = tiny().codec.decompress_raw(&mut backend(), x, n, &mut |_, _| {});
            assert!(same(m, &alone), "round {round}, item {i}: {m:?} alone: {alone:?}");
        }
    }
}

/// Lengths that headers or callers state, summed over items, saturate instead of
/// overflowing (a panic where overflow checks are on, a wrapped progress count where they are
/// off): two compact model files each claiming 2^64 − 1 bytes (fuzz/regressions/
/// many-compact-model-claims-2e64-bytes-twice) and a valid file after them, and raw streams
/// given u64::MAX as their length. Each item gets its own result, every progress report is
/// within its total, and the last one is the total.
#[test]
fn stated_lengths_near_u64_max_saturate_in_the_counts() {
    let bomb = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/many-compact-model-claims-2e64-bytes-twice"
    ))
    .unwrap();
    let parts: Vec<&[u8]> = bomb.split(|&x| x == 0xF7).collect();
    assert_eq!(parts.len(), 2);
    let data = text(90);
    let stored = compress(
        &data,
        &Options {
            model: ModelUse::Never,
            compact: false,
            ..Options::default()
        },
    );
    let files = [parts[0], parts[1], &stored[..]];
    let mut reports: Vec<(u64, u64)> = Vec::new();
    let mut b = CpuBackend::with_slots(&tiny().model, 1, 128).unwrap();
    let out = tiny()
        .codec
        .decompress_many(&mut b, &files, &mut |d, t| {
            reports.push((d, t));
        })
        .unwrap();
    for r in &out[..2] {
        assert!(r.as_ref().unwrap_err().code().starts_with("LMZ_FORMAT_"), "{r:?}");
    }
    assert_eq!(out[2].as_ref().unwrap(), &data);
    assert!(reports.iter().all(|&(d, t)| d <= t), "{reports:?}");
    assert_eq!(reports.last(), Some(&(u64::MAX, u64::MAX)), "{reports:?}");

    let plain = tiny()
        .codec
        .compress_raw(&mut backend(), &data, ModelUse::Never, &mut |_, _| {})
        .unwrap();
    let model = raw(&data);
    let items = [
        (&plain[..], u64::MAX),
        (&plain[..], u64::MAX),
        (&model[..], data.len() as u64),
    ];
    let mut reports: Vec<(u64, u64)> = Vec::new();
    let out = tiny()
        .codec
        .decompress_raw_many(&mut b, &items, None, &mut |d, t| {
            reports.push((d, t));
        })
        .unwrap();
    assert!(out[0].is_err() && out[1].is_err(), "{out:?}");
    assert_eq!(out[2].as_ref().unwrap(), &data);
    assert!(reports.iter().all(|&(d, t)| d <= t), "{reports:?}");
    assert_eq!(reports.last(), Some(&(u64::MAX, u64::MAX)), "{reports:?}");
}
