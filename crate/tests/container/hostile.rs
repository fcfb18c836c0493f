//! Hostile input: the wrong model, every truncation, bit flips, hostile headers, the fuzz
//! regression corpus (and the test that writes its seeds), the bound on decoding work.

use crate::common::{backend, tiny};
use crate::{compress, decompress, decompress_slots, forced, multi, random, text};
use lmz::backend::cpu::CpuBackend;
use lmz::container::{info, Codec, Form, ModelUse, Options};
use lmz::tiny::{tiny_model, Rng, TinyShape};
use lmz::Error;

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
    assert_eq!(code(&[0xFF, 1, 2, 3]), "LMZ_FORMAT_UNSUPPORTED_VERSION");
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
    // error or the right bytes, never a panic, through every call the fuzz target makes.
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
        // The many-item calls, as the fuzz target makes them: the bytes cut at every 0xF7,
        // on a cache of one window; each item gets what it gets alone.
        let parts: Vec<&[u8]> = bytes.split(|&x| x == 0xF7).collect();
        let raws: Vec<(&[u8], u64)> = parts
            .iter()
            .filter_map(|p| p.split_first().map(|(&n, r)| (r, n as u64)))
            .collect();
        let mut small = CpuBackend::with_slots(&tiny().model, 1, tiny().model.config().ctx).unwrap();
        let many = tiny()
            .codec
            .decompress_raw_many(&mut small, &raws, None, &mut |_, _| {})
            .unwrap();
        for (m, &(raw, len)) in many.iter().zip(&raws) {
            let alone = tiny().codec.decompress_raw(&mut backend(), raw, len, &mut |_, _| {});
            assert_eq!(m.as_ref().ok(), alone.as_ref().ok(), "{name}: a raw item");
        }
        let _ = tiny()
            .codec
            .decompress_raw_many(&mut small, &raws, Some(3), &mut |_, _| {})
            .unwrap();
        let files = tiny()
            .codec
            .decompress_many(&mut small, &parts, &mut |_, _| {})
            .unwrap();
        for (m, f) in files.iter().zip(&parts) {
            assert_eq!(m.as_ref().ok(), decompress(f).as_ref().ok(), "{name}: a file item");
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
