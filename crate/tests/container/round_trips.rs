//! Round trips of every kind of input and option, the context policies (the KV cache kept
//! or recomputed) and the online models, texts of many windows and chunks, random data.

use crate::common::{backend, tiny};
use crate::{always, compress, decompress, decompress_slots, forced, multi, random, text};
use lmz::container::{info, Form, Method, ModelUse, Options};

#[test]
fn round_trips() {
    let utf16: Vec<u8> = "Ünïcödé notes, UTF-16 — the thin anthem\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut binary = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    binary.extend((0..600u32).flat_map(|i| [(i % 7) as u8, 0, 0, (i * 13 % 256) as u8]));
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![b'x']),
        ("one zero byte", vec![0]),
        ("text", text(700)),
        ("random", random(3000, 1)),
        ("binary", binary),
        ("utf-16", utf16),
        (
            "invalid utf-8",
            vec![0xff, 0xfe, b't', b'h', 0xc3, 0x28, b'e', 0xe2, 0x82],
        ),
    ];
    for (name, data) in &inputs {
        for opts in [
            Options::default(),
            always(),
            forced(),
            multi(50),
            Options {
                model: ModelUse::Never,
                ..Options::default()
            },
        ] {
            let file = compress(data, &opts);
            let got = decompress(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&got, data, "{name} with {opts:?}");
            let i = info(&file).unwrap();
            assert_eq!(i.original_len, data.len() as u64);
            assert_eq!(i.compressed_len, file.len() as u64);
            assert_eq!(
                i.form,
                if opts.compact && i.chunks.len() <= 1 {
                    Form::Compact
                } else {
                    Form::Full
                },
                "{name}"
            );
        }
    }
}

/// Both context policies: the context kept in the KV cache (full-form flag 1, compact tag
/// 0xFB); files of the first format's policy (flag 0, tag 0xFA) still decode; on a text
/// shorter than a window the two code the same bytes, on a longer one they differ.
#[test]
fn kv_shift_and_recompute_policies() {
    use lmz::container::{FLAG_KV_SHIFT, TAG_MODEL, TAG_MODEL_CHAT, TAG_MODEL_MIXED, TAG_MODEL_SHIFT};
    use lmz::eval::{KvMode, Policy};
    let cfg = tiny().model.config();
    let recompute = Options {
        policy: Some(Policy::recompute_for(cfg)),
        ..forced()
    };
    let shifted = Options {
        policy: Some(Policy::shift_for(cfg)),
        ..forced()
    };
    let data = text(1500); // ~1000 tokens: many windows of 128
    for compact in [false, true] {
        let opts = |o: Options| Options {
            chunk_tokens: usize::MAX,
            compact,
            ..o
        };
        let shift = compress(&data, &opts(shifted.clone()));
        let old = compress(&data, &opts(recompute.clone()));
        assert_eq!(info(&shift).unwrap().kv, KvMode::Shift);
        assert_eq!(info(&old).unwrap().kv, KvMode::Recompute);
        if compact {
            assert_eq!((shift[0], old[0]), (TAG_MODEL_SHIFT, TAG_MODEL));
        } else {
            assert_eq!((shift[5], old[5]), (FLAG_KV_SHIFT, 0));
        }
        assert_ne!(shift, old);
        assert_eq!(decompress(&shift).unwrap(), data);
        assert_eq!(decompress(&old).unwrap(), data);
        // Under one window the policies agree.
        let short = text(60);
        let (a, b) = (
            compress(&short, &opts(shifted.clone())),
            compress(&short, &opts(recompute.clone())),
        );
        let p = info(&a).unwrap().chunks[0].stored_len as usize;
        assert_eq!(a.len(), b.len());
        assert_eq!(a[a.len() - p..], b[b.len() - p..]);
    }
    // An explicit policy that no compact tag names gets the full form.
    let other = Options {
        policy: Some(Policy {
            stride: 17,
            ..Policy::shift_for(cfg)
        }),
        ..forced()
    };
    let f = compress(&data, &other);
    assert_eq!(info(&f).unwrap().form, Form::Full);
    assert_eq!(info(&f).unwrap().window_stride, Some((128, 17)));
    assert_eq!(decompress(&f).unwrap(), data);
    // Raw streams of every tag decode (the default's is 0xFE, the note frame: one chunk).
    let raw = tiny()
        .codec
        .compress_raw(&mut backend(), &data, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    assert_eq!(raw[0], TAG_MODEL_CHAT);
    assert_eq!(
        tiny()
            .codec
            .decompress_raw(&mut backend(), &raw, data.len() as u64, &mut |_, _| {})
            .unwrap(),
        data
    );
    // The previous default, 0xFD (the same policy without the note frame: what a policy named
    // explicitly still writes), decodes as a file and as a raw stream.
    let mixed = compress(
        &data,
        &Options {
            chunk_tokens: usize::MAX,
            policy: Some(tiny().codec.default_policy()),
            ..forced()
        },
    );
    assert_eq!(mixed[0], TAG_MODEL_MIXED);
    assert_eq!(decompress(&mixed).unwrap(), data);
    let (mixed_raw, n) = lmz::container::compact_to_raw(&mixed).unwrap();
    assert_eq!(
        tiny()
            .codec
            .decompress_raw(&mut backend(), &mixed_raw, n, &mut |_, _| {})
            .unwrap(),
        data
    );
    let sh = compress(
        &data,
        &Options {
            chunk_tokens: usize::MAX,
            ..shifted
        },
    );
    let mut raw = vec![sh[0]];
    raw.extend_from_slice(&sh[1 + 2 + 2..]); // tag, [fingerprint, length varint (2 bytes)], check, payload
    assert_eq!(raw[0], TAG_MODEL_SHIFT);
    assert_eq!(
        tiny()
            .codec
            .decompress_raw(&mut backend(), &raw, data.len() as u64, &mut |_, _| {})
            .unwrap(),
        data
    );
    let old = compress(
        &data,
        &Options {
            chunk_tokens: usize::MAX,
            ..recompute
        },
    );
    let mut old_raw = vec![old[0]];
    old_raw.extend_from_slice(&old[1 + 2 + 2..]); // tag, [fingerprint, length varint (2 bytes)], check, payload
    assert_eq!(
        tiny()
            .codec
            .decompress_raw(&mut backend(), &old_raw, data.len() as u64, &mut |_, _| {})
            .unwrap(),
        data
    );
}

/// The online models: the default policy adds the adaptive bias (full-form flag 2) and the
/// n-gram mixer (flag 4), compact tag 0xFD; the bias alone is tag 0xFC. On a repetitive
/// text each makes smaller files than the one before; they decode, in lock-step slots too;
/// a combination no tag names takes the full form.
#[test]
fn online_model_policies() {
    use lmz::container::{FLAG_ADAPT, FLAG_KV_SHIFT, FLAG_NGRAM, TAG_MODEL_ADAPT, TAG_MODEL_CHAT};
    use lmz::eval::Policy;
    let cfg = tiny().model.config();
    let data = text(1500);
    let plain = Options {
        policy: Some(Policy::shift_for(cfg)),
        ..forced()
    };
    let biased = Options {
        policy: Some(Policy::adaptive_for(cfg)),
        ..forced()
    };
    for compact in [false, true] {
        let opts = |o: Options| Options {
            chunk_tokens: usize::MAX,
            compact,
            ..o
        };
        let (m, a, p) = (
            compress(&data, &opts(forced())),
            compress(&data, &opts(biased.clone())),
            compress(&data, &opts(plain.clone())),
        );
        let (im, ia, ip) = (info(&m).unwrap(), info(&a).unwrap(), info(&p).unwrap());
        assert!(im.adapt && im.ngram && ia.adapt && !ia.ngram && !ip.adapt && !ip.ngram);
        if compact {
            // The default policy's one chunk is framed as a note; a policy named explicitly is not.
            assert_eq!((m[0], a[0]), (TAG_MODEL_CHAT, TAG_MODEL_ADAPT));
        } else {
            assert_eq!(
                (m[5], a[5]),
                (FLAG_KV_SHIFT | FLAG_ADAPT | FLAG_NGRAM, FLAG_KV_SHIFT | FLAG_ADAPT)
            );
        }
        // The tiny model is random and often confidently wrong (a bias of at most 8 octaves
        // cannot undo all of it), so the bias gains little here; the text repeats its words,
        // which the n-gram mixer learns. On real text: BENCHMARKS.md.
        assert!(
            a.len() < p.len(),
            "adaptive {} bytes, the model alone {}",
            a.len(),
            p.len()
        );
        assert!(m.len() < a.len(), "mixed {} bytes, adaptive {}", m.len(), a.len());
        for f in [&m, &a, &p] {
            assert_eq!(decompress(f).unwrap(), data);
        }
    }
    let many = compress(&data, &multi(97));
    assert!(info(&many).unwrap().ngram);
    for slots in [1, 2, 4] {
        assert_eq!(decompress_slots(&many, slots).unwrap(), data, "{slots} slots");
    }
    for (adapt, ngram, flags) in [
        (true, false, FLAG_ADAPT),
        (false, true, FLAG_NGRAM),
        (true, true, FLAG_ADAPT | FLAG_NGRAM),
    ] {
        let ra = Options {
            policy: Some(Policy {
                adapt,
                ngram,
                ..Policy::recompute_for(cfg)
            }),
            chunk_tokens: usize::MAX,
            ..forced()
        };
        let f = compress(&data, &ra);
        assert_eq!((info(&f).unwrap().form, f[5]), (Form::Full, flags));
        assert_eq!(decompress(&f).unwrap(), data);
    }
    // The mixer without the bias, on the shifted context: no tag either.
    let n = compress(
        &data,
        &Options {
            policy: Some(Policy {
                ngram: true,
                ..Policy::shift_for(cfg)
            }),
            chunk_tokens: usize::MAX,
            ..forced()
        },
    );
    assert_eq!((info(&n).unwrap().form, n[5]), (Form::Full, FLAG_KV_SHIFT | FLAG_NGRAM));
    assert_eq!(decompress(&n).unwrap(), data);
}

#[test]
fn text_spanning_many_windows_and_chunks() {
    // The tiny model's context is 128: windows of 128, stride 64. 1500 bytes of text are
    // ~1000 tokens: many windows in one chunk, and many chunks.
    let data = text(1500);
    let one = compress(
        &data,
        &Options {
            chunk_tokens: usize::MAX,
            compact: false,
            ..forced()
        },
    );
    let i = info(&one).unwrap();
    assert_eq!(i.chunks.len(), 1);
    assert_eq!(i.chunks[0].method, Method::Model);
    assert_eq!(decompress(&one).unwrap(), data);
    let many = compress(&data, &multi(97));
    let i = info(&many).unwrap();
    assert!(i.chunks.len() > 5, "{}", i.chunks.len());
    assert!(i.chunks.iter().all(|c| c.method == Method::Model));
    assert_eq!(decompress(&many).unwrap(), data);
    // Lock-step decoding of the chunks in 2 or 4 sequence slots gives the same bytes; a
    // flipped payload bit in a later chunk is still an error naming that chunk.
    for slots in [2, 4] {
        assert_eq!(decompress_slots(&many, slots).unwrap(), data, "{slots} slots");
    }
    let mut bad = many.clone();
    let n = bad.len();
    bad[n - 3] ^= 0x10;
    let e = decompress_slots(&bad, 4).unwrap_err();
    assert!(e.code().starts_with("LMZ_FORMAT_"), "{e}");
    // Deterministic: the same input gives the same bytes.
    assert_eq!(compress(&data, &multi(97)), many);
}

#[test]
fn random_data_grows_by_a_few_bytes_per_chunk() {
    let data = random(20000, 7);
    for opts in [
        Options::default(),
        Options {
            chunk_tokens: 1000,
            compact: false,
            model: ModelUse::Always,
            ..Options::default()
        },
    ] {
        let file = compress(&data, &opts);
        let i = info(&file).unwrap();
        // Consecutive stored chunks are merged: one table entry, one header.
        assert_eq!(i.chunks.len(), 1, "{:?}", i.chunks);
        assert_eq!(i.chunks[0].method, Method::Stored);
        assert!(file.len() <= data.len() + 80, "{} → {}", data.len(), file.len());
        assert_eq!(decompress(&file).unwrap(), data);
    }
    let compact = compress(&data, &Options::default());
    assert!(compact.len() <= data.len() + 8, "{}", compact.len());
}
