//! The `.lmz` container on a seeded tiny model: round trips of every kind of input, the
//! compact forms' overhead, and hostile input (truncations, bit flips, wrong model, junk).

use lmz::backend::cpu::CpuBackend;
use lmz::container::{info, Codec, Form, Method, ModelUse, Options};
use lmz::tiny::{tiny_model, Rng, TinyShape};
use lmz::Error;

mod common;
use common::{backend, tiny};

fn text(n: usize) -> Vec<u8> {
    common::words_text(n, 3)
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.below(256) as u8).collect()
}

fn compress(data: &[u8], opts: &Options) -> Vec<u8> {
    tiny()
        .codec
        .compress(&mut backend(), data, opts, &mut |_, _| {})
        .unwrap()
}

fn decompress(file: &[u8]) -> lmz::Result<Vec<u8>> {
    tiny().codec.decompress(&mut backend(), file, &mut |_, _| {})
}

/// Decompression with an engine of `slots` sequences (lock-step decoding of chunks).
fn decompress_slots(file: &[u8], slots: usize) -> lmz::Result<Vec<u8>> {
    let mut b = CpuBackend::with_slots(&tiny().model, slots, tiny().model.config().ctx).unwrap();
    tiny().codec.decompress(&mut b, file, &mut |_, _| {})
}

/// The tiny model is random: it predicts worse than storing, so `Always` picks stored or
/// zstd; `Force` keeps the model's output, which is what most tests exercise.
fn always() -> Options {
    Options {
        model: ModelUse::Always,
        ..Options::default()
    }
}

fn forced() -> Options {
    Options {
        model: ModelUse::Force,
        ..Options::default()
    }
}

fn multi(chunk_tokens: usize) -> Options {
    Options {
        model: ModelUse::Force,
        chunk_tokens,
        compact: false,
        ..Options::default()
    }
}

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
    use lmz::container::{FLAG_KV_SHIFT, TAG_MODEL, TAG_MODEL_MIXED, TAG_MODEL_SHIFT};
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
    // Raw streams of every tag decode (the default's is 0xFD).
    let raw = tiny()
        .codec
        .compress_raw(&mut backend(), &data, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    assert_eq!(raw[0], TAG_MODEL_MIXED);
    assert_eq!(
        tiny()
            .codec
            .decompress_raw(&mut backend(), &raw, data.len() as u64, &mut |_, _| {})
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
    use lmz::container::{FLAG_ADAPT, FLAG_KV_SHIFT, FLAG_NGRAM, TAG_MODEL_ADAPT, TAG_MODEL_MIXED};
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
            assert_eq!((m[0], a[0]), (TAG_MODEL_MIXED, TAG_MODEL_ADAPT));
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

#[test]
fn compact_forms_cost_few_bytes_over_the_coder() {
    let t = tiny();
    let note = text(200);
    let raw = t
        .codec
        .compress_raw(&mut backend(), &note, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    assert_eq!(raw[0], lmz::container::TAG_MODEL_MIXED);
    let coder_bytes = raw.len() - 3;
    assert_eq!(
        t.codec
            .decompress_raw(&mut backend(), &raw, note.len() as u64, &mut |_, _| {})
            .unwrap(),
        note
    );
    let file = compress(&note, &forced());
    let i = info(&file).unwrap();
    assert_eq!(i.form, Form::Compact);
    assert!(
        file.len() <= coder_bytes + 8,
        "standalone {} vs coder {coder_bytes}",
        file.len()
    );
    // tag + 2 fingerprint bytes + 2-byte length + 2-byte check.
    assert_eq!(file.len(), coder_bytes + 7);
    eprintln!(
        "200-byte note: coder {coder_bytes} bytes, raw {} bytes, standalone {} bytes",
        raw.len(),
        file.len()
    );
    assert_eq!(decompress(&file).unwrap(), note);
    // The raw stream with the wrong length or the wrong model is an error.
    assert!(t
        .codec
        .decompress_raw(&mut backend(), &raw, note.len() as u64 - 1, &mut |_, _| {})
        .is_err());
    let other = tiny_model(6, TinyShape::default()).unwrap();
    let oc = Codec::new(&other).unwrap();
    let mut ob = CpuBackend::new(&other, other.config().ctx).unwrap();
    assert!(oc
        .decompress_raw(&mut ob, &raw, note.len() as u64, &mut |_, _| {})
        .is_err());
    // Empty input: a 6-byte file and a 3-byte raw stream.
    assert_eq!(compress(b"", &Options::default()).len(), 6);
    let raw = t
        .codec
        .compress_raw(&mut backend(), b"", ModelUse::Auto, &mut |_, _| {})
        .unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(
        t.codec.decompress_raw(&mut backend(), &raw, 0, &mut |_, _| {}).unwrap(),
        b""
    );
}

/// A raw stream turned into a standalone file is the file `compress` writes in the compact
/// form (same method), and it decodes; malformed raw streams are errors, not files.
#[test]
fn raw_streams_become_compact_files() {
    let t = tiny();
    let fp = t.codec.fingerprint();
    let note = text(200);
    let raw = t
        .codec
        .compress_raw(&mut backend(), &note, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    let file = lmz::container::raw_to_compact(fp, &raw, note.len() as u64).unwrap();
    assert_eq!(file, compress(&note, &forced()));
    assert_eq!(decompress(&file).unwrap(), note);
    for data in [b"".to_vec(), b"x".to_vec(), random(300, 7), text(1000)] {
        let raw = t
            .codec
            .compress_raw(&mut backend(), &data, ModelUse::Auto, &mut |_, _| {})
            .unwrap();
        let file = lmz::container::raw_to_compact(fp, &raw, data.len() as u64).unwrap();
        assert_eq!(file, compress(&data, &Options::default()), "{} bytes", data.len());
        assert_eq!(decompress(&file).unwrap(), data);
    }
    // A wrong length is caught when the file is decoded.
    let file = lmz::container::raw_to_compact(fp, &raw, note.len() as u64 + 1).unwrap();
    assert!(decompress(&file).is_err());
    assert_eq!(
        lmz::container::raw_to_compact(fp, &[], 0).unwrap_err().code(),
        "LMZ_FORMAT_TRUNCATED"
    );
    assert_eq!(
        lmz::container::raw_to_compact(fp, &[0xFA, 1], 0).unwrap_err().code(),
        "LMZ_FORMAT_TRUNCATED"
    );
    assert_eq!(
        lmz::container::raw_to_compact(fp, &[0x41, 1, 2], 0).unwrap_err().code(),
        "LMZ_FORMAT_BAD_MAGIC"
    );
    assert_eq!(
        lmz::container::raw_to_compact(fp, &[0xFE, 1, 2], 0).unwrap_err().code(),
        "LMZ_FORMAT_UNSUPPORTED_VERSION"
    );
}

#[test]
fn wrong_model_names_the_fingerprint() {
    let data = text(300);
    let other = tiny_model(6, TinyShape::default()).unwrap();
    let oc = Codec::new(&other).unwrap();
    let mut ob = CpuBackend::new(&other, other.config().ctx).unwrap();
    for opts in [forced(), multi(40)] {
        let file = compress(&data, &opts);
        match oc.decompress(&mut ob, &file, &mut |_, _| {}) {
            Err(e @ Error::FormatModelMismatch { .. }) => {
                assert_eq!(e.code(), "LMZ_FORMAT_MODEL_MISMATCH");
                let fp = lmz::pack::hex(&tiny().model.fingerprint);
                assert!(e.to_string().contains(&fp[..4]), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    // Short, so that decoding each truncation with the model stays fast.
    let data = text(150);
    for opts in [
        multi(30),
        forced(),
        Options {
            model: ModelUse::Never,
            ..Options::default()
        },
    ] {
        let file = compress(&data, &opts);
        for n in 0..file.len() {
            let r = decompress(&file[..n]);
            assert!(r.is_err(), "truncated to {n} of {} decoded: {opts:?}", file.len());
            assert!(decompress_slots(&file[..n], 3).is_err(), "truncated to {n}, 3 slots");
        }
        // Concatenations and junk appended.
        let mut twice = file.clone();
        twice.extend_from_slice(&file);
        assert!(decompress(&twice).is_err());
        // Junk after a full file is an error; after a compact model-coded payload, bytes that
        // leave the decoded value inside the final interval decode to the same output (the
        // coder drops trailing zeros), which is harmless — anything else is an error.
        for extra in [&[0u8][..], &[1], &[0xff, 0xff], &[7; 40]] {
            let mut junk = file.clone();
            junk.extend_from_slice(extra);
            match decompress(&junk) {
                Err(_) => {}
                Ok(d) => assert!(
                    d == data && info(&file).unwrap().form == Form::Compact,
                    "{extra:?} after {opts:?}"
                ),
            }
        }
    }
}

#[test]
fn bit_flips_are_errors() {
    let data = text(150);
    let mut r = Rng(11);
    for opts in [
        multi(30),
        forced(),
        Options {
            model: ModelUse::Never,
            compact: false,
            ..Options::default()
        },
    ] {
        let file = compress(&data, &opts);
        let bits = file.len() * 8;
        // Every bit of the header and chunk table (checked before any decoding, so cheap),
        // then a sample of the rest.
        let head = if info(&file).unwrap().form == Form::Full { 80 } else { 8 };
        let mut positions: Vec<usize> = (0..bits.min(head * 8)).collect();
        positions.extend((0..150).map(|_| r.below(bits as u64) as usize));
        let mut harmless = 0;
        for &bit in &positions {
            let mut bad = file.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            match decompress(&bad) {
                Err(e) => assert!(e.code().starts_with("LMZ_FORMAT_"), "{e}"),
                // A flip that changes nothing decoded (a zstd frame's window size, say) is
                // harmless; one that changes the output must never get through.
                Ok(d) if d == data => harmless += 1,
                Ok(d) => panic!(
                    "flipping bit {bit} of {} decoded to different bytes ({})",
                    file.len(),
                    d.len()
                ),
            }
        }
        assert!(
            harmless * 50 <= positions.len(),
            "{harmless} of {} flips decoded",
            positions.len()
        );
    }
}

#[test]
fn hostile_headers() {
    let data = text(300);
    let file = compress(&data, &multi(60));
    let code = |f: &[u8]| decompress(f).unwrap_err().code();
    assert_eq!(code(b""), "LMZ_FORMAT_TRUNCATED");
    assert_eq!(code(b"hello world"), "LMZ_FORMAT_BAD_MAGIC");
    assert_eq!(code(&[0x89, b'L', b'M']), "LMZ_FORMAT_BAD_MAGIC");
    assert_eq!(code(&[0xFE, 1, 2, 3]), "LMZ_FORMAT_UNSUPPORTED_VERSION");
    let mut v2 = file.clone();
    v2[4] = 2;
    assert_eq!(code(&v2), "LMZ_FORMAT_UNSUPPORTED_VERSION");
    // A flag this version does not know (bit 3), with a valid header checksum.
    let table_end = file.len()
        - info(&file)
            .unwrap()
            .chunks
            .iter()
            .map(|c| c.stored_len as usize)
            .sum::<usize>()
        - 4;
    let mut f2 = file.clone();
    f2[5] |= 8;
    let crc = crc32(&f2[..table_end]);
    f2[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(code(&f2), "LMZ_FORMAT_UNSUPPORTED_VERSION");
    f2[5] &= !8;
    let crc = crc32(&f2[..table_end]);
    f2[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decompress(&f2).unwrap(), data);
    // A chunk count of 2^32 − 1 with a valid header checksum: refused before any allocation.
    let mut huge = file[..62].to_vec();
    huge[58..62].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32(&huge);
    huge.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(code(&huge), "LMZ_FORMAT_TRUNCATED");
    // An original length of 2^64 − 1 in a compact file: no allocation, an error.
    let mut c = vec![lmz::container::TAG_STORED];
    c.extend_from_slice(&tiny().model.fingerprint[..2]);
    c.extend_from_slice(&[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 1, 2, 3,
    ]);
    assert_eq!(code(&c), "LMZ_FORMAT_CORRUPT");
    c[0] = lmz::container::TAG_ZSTD;
    assert_eq!(code(&c), "LMZ_FORMAT_CORRUPT");
    // A model-coded chunk of junk claiming more bytes than it holds.
    let mut m = vec![lmz::container::TAG_MODEL];
    m.extend_from_slice(&tiny().model.fingerprint[..2]);
    m.extend_from_slice(&[50, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
    assert!(decompress(&m).is_err());
    // A varint of 11 bytes, and a non-minimal one.
    let mut v = vec![lmz::container::TAG_STORED, c[1], c[2]];
    v.extend_from_slice(&[0x80; 11]);
    assert_eq!(code(&v), "LMZ_FORMAT_CORRUPT");
    let v = [lmz::container::TAG_STORED, c[1], c[2], 0x81, 0x00, 0, 0, b'x'];
    assert_eq!(code(&v), "LMZ_FORMAT_CORRUPT");
}

#[test]
fn regression_corpus_never_panics() {
    // Inputs kept from fuzzing (fuzz/corpus/decompress, see fuzz/README.md): each must give an
    // error or the right bytes, never a panic.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        // What the fuzz target does.
        let r = decompress(&bytes);
        let _ = info(&bytes);
        if let Some((&len, raw)) = bytes.split_first() {
            let raw_r = tiny()
                .codec
                .decompress_raw(&mut backend(), raw, len as u64, &mut |_, _| {});
            if name.starts_with("valid-raw") {
                assert!(raw_r.is_ok(), "{name}: {raw_r:?}");
            }
        }
        if name.starts_with("valid-") && !name.starts_with("valid-raw") {
            assert!(r.is_ok(), "{name}: {r:?}");
        }
        n += 1;
    }
    eprintln!("{n} regression inputs replayed");
}

fn crc32(b: &[u8]) -> u32 {
    // The same CRC-32 (IEEE) as zlib, bit by bit: the test does not trust the crate it checks.
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB88320 } else { c >> 1 };
        }
    }
    !c
}

/// Writes the seed files of `fuzz/regressions/` (run with `--ignored` after a format change).
#[test]
#[ignore]
fn write_regression_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    std::fs::create_dir_all(&dir).unwrap();
    let t = tiny();
    let note = text(120);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("valid-compact-model", compress(&note, &forced())),
        ("valid-compact-stored", compress(&random(50, 2), &Options::default())),
        ("valid-compact-empty", compress(b"", &Options::default())),
        ("valid-full-model-chunks", compress(&note, &multi(25))),
        (
            "valid-full-zstd",
            compress(
                &b"abcabcabc".repeat(40),
                &Options {
                    model: ModelUse::Never,
                    compact: false,
                    ..Options::default()
                },
            ),
        ),
        ("valid-raw-model-len120", {
            let mut r = vec![120u8];
            r.extend(
                t.codec
                    .compress_raw(&mut backend(), &note, ModelUse::Force, &mut |_, _| {})
                    .unwrap(),
            );
            r
        }),
        ("hostile-chunk-count", {
            let mut h = compress(&note, &multi(25))[..62].to_vec();
            h[58..62].copy_from_slice(&u32::MAX.to_le_bytes());
            let c = crc32(&h);
            h.extend_from_slice(&c.to_le_bytes());
            h
        }),
        ("hostile-compact-length", {
            let mut c = vec![lmz::container::TAG_ZSTD];
            c.extend_from_slice(&t.model.fingerprint[..2]);
            c.extend_from_slice(&[0xff; 9]);
            c.extend_from_slice(&[1, 0, 0, 0x28, 0xb5, 0x2f, 0xfd]);
            c
        }),
        ("hostile-truncated-full", compress(&note, &multi(25))[..70].to_vec()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The decoding-work bound: a compact model file claiming 2^55 bytes stops after at most
/// 64 tokens per payload byte (the fuzzer's find, replayed from fuzz/regressions too), and a
/// legitimately repetitive input still round-trips (zstd takes chunks that break the rule).
#[test]
fn decoding_work_is_bounded_by_the_payload() {
    let bomb = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/slow-compact-model-claims-2e55-bytes"
    ))
    .unwrap();
    let t = std::time::Instant::now();
    let e = decompress(&bomb).unwrap_err();
    assert!(e.code().starts_with("LMZ_FORMAT_"), "{e}");
    assert!(t.elapsed().as_secs() < 60, "{:?}", t.elapsed());
    assert_eq!(lmz::container::max_model_tokens(100), 100 * 64 + 64);
    let rep = "the the the the ".repeat(400).into_bytes();
    for opts in [forced(), multi(200)] {
        let file = compress(&rep, &opts);
        assert_eq!(decompress(&file).unwrap(), rep);
    }
}

/// A progress that cancels once `after` bytes are reported stops the work with
/// `LMZ_CANCELLED`, compressing and decompressing, and a cancelled run leaves the engine
/// usable for the next one.
#[test]
fn progress_can_cancel_and_the_engine_stays_usable() {
    struct CancelAfter(u64, u64);
    impl lmz::container::Progress for CancelAfter {
        fn update(&mut self, done: u64, _total: u64) -> lmz::Result<()> {
            self.1 += 1;
            if done >= self.0 {
                return Err(Error::Cancelled);
            }
            Ok(())
        }
    }
    let t = tiny();
    let data = text(3000);
    let opts = Options {
        chunk_tokens: 200,
        model: ModelUse::Force,
        ..Options::default()
    };
    let mut b = backend();
    let e = t
        .codec
        .compress(&mut b, &data, &opts, &mut CancelAfter(1, 0))
        .unwrap_err();
    assert_eq!(e.code(), "LMZ_CANCELLED");
    let file = t.codec.compress(&mut b, &data, &opts, &mut |_, _| {}).unwrap();
    assert!(info(&file).unwrap().chunks.len() > 1);
    let mut p = CancelAfter(data.len() as u64 / 2, 0);
    assert!(matches!(
        t.codec.decompress(&mut b, &file, &mut p),
        Err(Error::Cancelled)
    ));
    assert!(p.1 >= 1);
    assert_eq!(t.codec.decompress(&mut b, &file, &mut |_, _| {}).unwrap(), data);
    // The raw stream too.
    for model in [ModelUse::Force, ModelUse::Never] {
        let raw = t
            .codec
            .compress_raw(&mut b, &data[..400], model, &mut |_, _| {})
            .unwrap();
        assert!(
            matches!(
                t.codec.decompress_raw(&mut b, &raw, 400, &mut CancelAfter(0, 0)),
                Err(Error::Cancelled)
            ),
            "{model:?}"
        );
        assert_eq!(
            t.codec.decompress_raw(&mut b, &raw, 400, &mut |_, _| {}).unwrap(),
            &data[..400]
        );
    }
}

/// The async API is the sync one's body: the same bytes, driven by any executor.
#[test]
fn async_api_gives_the_same_bytes() {
    let t = tiny();
    let data = text(1500);
    let opts = Options {
        chunk_tokens: 150,
        ..Options::default()
    };
    let mut b = backend();
    let sync = t.codec.compress(&mut b, &data, &opts, &mut |_, _| {}).unwrap();
    let asy = lmz::model::block_on(t.codec.compress_async(&mut b, &data, &opts, &mut |_, _| {})).unwrap();
    assert_eq!(sync, asy);
    let back = lmz::model::block_on(t.codec.decompress_async(&mut b, &asy, &mut |_, _| {})).unwrap();
    assert_eq!(back, data);
}

/// `block_on` polls once: a future that would wait (a browser's GPU readback) is an error
/// naming the async API, never a spin or a hang.
#[test]
fn block_on_refuses_a_future_that_waits() {
    struct WaitsOnce;
    impl std::future::Future for WaitsOnce {
        type Output = lmz::Result<u32>;
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
            std::task::Poll::Pending
        }
    }
    let e = lmz::model::block_on(WaitsOnce).unwrap_err();
    assert_eq!(e.code(), "LMZ_INVALID_ARGUMENT");
    assert!(e.to_string().contains("async"), "{e}");
    assert_eq!(lmz::model::block_on(async { Ok(7u32) }).unwrap(), 7);
}

/// A reader that hands out its bytes a few at a time (1..=13), as pipes do.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    r: Rng,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (1 + self.r.below(13) as usize)
            .min(buf.len())
            .min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What `compress_stream` writes: its head, then the payloads in the order it handed them out.
fn compress_streamed(data: &[u8], opts: &Options) -> Vec<u8> {
    let mut payloads = Vec::new();
    let mut input = Trickle {
        data: data.to_vec(),
        at: 0,
        r: Rng(data.len() as u64),
    };
    let head = tiny()
        .codec
        .compress_stream(
            &mut backend(),
            &mut input,
            data.len() as u64,
            opts,
            &mut |_, _| {},
            &mut |p| {
                payloads.extend_from_slice(p);
                Ok(())
            },
        )
        .unwrap();
    [head, payloads].concat()
}

#[test]
fn segment_cuts_depend_only_on_the_first_max_bytes() {
    use lmz::container::segment_len;
    let mut r = Rng(17);
    let utf8 = "Ünïcödé — a thin anthem ☃ 𝄞 then the note\n".repeat(20).into_bytes();
    let inputs = [
        text(700),
        utf8,
        random(700, 4),
        vec![b'a'; 700],
        vec![b'\n'; 700],
        Vec::new(),
        b"abc".to_vec(),
    ];
    for data in &inputs {
        for max in [1, 8, 13, 64, 300, 1000] {
            let n = segment_len(data, true, max);
            let m = max.max(8);
            if data.len() <= m {
                assert_eq!(n, data.len(), "the whole rest when it fits");
                continue;
            }
            assert!(n > 0 && n <= m, "n {n} max {m}");
            // Only the first `max` bytes decide, whatever else has been read or is to come.
            for extra in 0..5 {
                let more = r.below(data.len() as u64 - m as u64 + 1) as usize;
                assert_eq!(
                    segment_len(&data[..m + more], more + m == data.len(), max),
                    n,
                    "extra {extra}"
                );
            }
            if let Some(i) = data[..m].iter().rposition(|&c| c == b'\n').filter(|&i| i >= m - m / 8) {
                assert_eq!(n, i + 1, "cut after the last line end in the last eighth");
            } else if std::str::from_utf8(data).is_ok() {
                assert!(
                    std::str::from_utf8(&data[..n]).is_ok(),
                    "a UTF-8 text is never cut inside a character"
                );
            }
        }
    }
}

#[test]
fn segments_stream_the_same_file_as_memory() {
    let utf8 = "Ünïcödé — a thin anthem ☃ then the note\n".repeat(30).into_bytes();
    let cases = [
        (
            "text, model, many segments",
            text(3000),
            Options {
                segment_bytes: 400,
                ..multi(60)
            },
        ),
        (
            "text, model, one chunk per segment",
            text(2000),
            Options {
                segment_bytes: 500,
                ..forced()
            },
        ),
        (
            "utf-8, auto",
            utf8,
            Options {
                segment_bytes: 333,
                ..Options::default()
            },
        ),
        (
            "random, never",
            random(5000, 9),
            Options {
                model: ModelUse::Never,
                segment_bytes: 1024,
                ..Options::default()
            },
        ),
        (
            "short, compact",
            text(200),
            Options {
                segment_bytes: 400,
                ..forced()
            },
        ),
        (
            "empty",
            Vec::new(),
            Options {
                segment_bytes: 400,
                ..forced()
            },
        ),
    ];
    for (what, data, opts) in cases {
        let file = compress(&data, &opts);
        assert_eq!(compress_streamed(&data, &opts), file, "{what}: streamed ≠ in memory");
        assert_eq!(decompress(&file).unwrap(), data, "{what}");
        assert_eq!(decompress_slots(&file, 3).unwrap(), data, "{what}, 3 slots");
        let i = info(&file).unwrap();
        let segments = data.len().div_ceil(opts.segment_bytes);
        if segments > 1 {
            assert_eq!(i.form, Form::Full, "{what}");
            assert!(i.chunks.len() >= segments.min(2), "{what}: {} chunks", i.chunks.len());
        }
    }
    // Inputs that fit one segment make the same file whatever the segment size.
    let data = text(1500);
    assert_eq!(
        compress(
            &data,
            &Options {
                segment_bytes: 1500,
                ..multi(60)
            }
        ),
        compress(&data, &multi(60))
    );
}

#[test]
fn decompress_chunks_hands_out_every_chunk_in_order() {
    let data = text(3000);
    let file = compress(
        &data,
        &Options {
            segment_bytes: 700,
            ..multi(50)
        },
    );
    let chunks = info(&file).unwrap().chunks.len();
    assert!(chunks > 4, "{chunks} chunks");
    for slots in [1, 2, 3, 8] {
        let mut b = CpuBackend::with_slots(&tiny().model, slots, tiny().model.config().ctx).unwrap();
        let mut parts: Vec<Vec<u8>> = Vec::new();
        tiny()
            .codec
            .decompress_chunks(&mut b, &file, &mut |_, _| {}, &mut |p| {
                parts.push(p.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(parts.len(), chunks, "{slots} slots: one call per chunk");
        assert_eq!(parts.concat(), data, "{slots} slots");
    }
}
