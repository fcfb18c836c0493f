//! `Codec::decompress_chunks` (what the browser package's `decompressStream` runs) on a
//! seeded tiny model: the chunks come out in file order with the table's lengths, add up to
//! what `decompress` returns, and every error `decompress` reports is still reported — the
//! whole-file checksum after the last chunk, the compact form's check before any output.

use lmz::container::{info, ModelUse, Options};
use lmz::Error;

mod common;
use common::{backend, tiny};

fn text(n: usize) -> Vec<u8> {
    common::words_text(n, 7)
}

fn compress(data: &[u8], opts: &Options) -> Vec<u8> {
    tiny()
        .codec
        .compress(&mut backend(), data, opts, &mut |_, _| {})
        .unwrap()
}

/// The chunks `decompress_chunks` hands out, or its error with the chunks seen before it.
fn chunks(file: &[u8]) -> (Vec<Vec<u8>>, lmz::Result<()>) {
    let mut seen = Vec::new();
    let r = tiny()
        .codec
        .decompress_chunks(&mut backend(), file, &mut |_, _| {}, &mut |c| {
            seen.push(c.to_vec());
            Ok(())
        });
    (seen, r)
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
fn chunks_come_out_in_file_order_with_the_tables_lengths() {
    let data = text(1500);
    let file = compress(&data, &multi(97));
    let i = info(&file).unwrap();
    assert!(i.chunks.len() > 5, "{}", i.chunks.len());
    let (seen, r) = chunks(&file);
    r.unwrap();
    assert_eq!(
        seen.iter().map(Vec::len).collect::<Vec<_>>(),
        i.chunks.iter().map(|c| c.original_len as usize).collect::<Vec<_>>()
    );
    assert_eq!(seen.concat(), data);
    assert_eq!(
        seen.concat(),
        tiny().codec.decompress(&mut backend(), &file, &mut |_, _| {}).unwrap()
    );
    // stored and zstd chunks (the tiny model loses to them), a compact file, the empty input
    for (what, data, opts) in [
        (
            "always",
            text(900),
            Options {
                model: ModelUse::Always,
                chunk_tokens: 97,
                compact: false,
                ..Options::default()
            },
        ),
        (
            "compact",
            text(300),
            Options {
                model: ModelUse::Force,
                ..Options::default()
            },
        ),
        ("empty", Vec::new(), Options::default()),
    ] {
        let file = compress(&data, &opts);
        let (seen, r) = chunks(&file);
        r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(seen.concat(), data, "{what}");
        assert_eq!(
            seen.len(),
            info(&file)
                .unwrap()
                .chunks
                .iter()
                .filter(|c| c.original_len > 0)
                .count(),
            "{what}"
        );
    }
}

#[test]
fn damage_is_reported_as_decompress_reports_it() {
    let data = text(1500);
    let file = compress(&data, &multi(97));
    let n = file.len();
    // A flipped bit in the last payload: earlier chunks come out, then an error.
    let mut bad = file.clone();
    bad[n - 3] ^= 0x10;
    let (seen, r) = chunks(&bad);
    let e = r.unwrap_err();
    assert!(e.code().starts_with("LMZ_FORMAT_"), "{e}");
    assert_eq!(
        e.code(),
        tiny()
            .codec
            .decompress(&mut backend(), &bad, &mut |_, _| {})
            .unwrap_err()
            .code()
    );
    assert!(
        !seen.is_empty(),
        "the chunks before the damaged one were not handed out"
    );
    // A damaged header or a truncated file: nothing is decoded at all.
    for bad in [file[..n - 1].to_vec(), {
        let mut b = file.clone();
        b[20] ^= 1;
        b
    }] {
        let (seen, r) = chunks(&bad);
        assert!(r.unwrap_err().code().starts_with("LMZ_FORMAT_"));
        assert!(seen.is_empty());
    }
    // A compact file whose check fails hands out nothing.
    let compact = compress(
        &text(300),
        &Options {
            model: ModelUse::Force,
            ..Options::default()
        },
    );
    let mut bad = compact.clone();
    let m = bad.len();
    bad[m / 2] ^= 0x40; // inside the payload
    let (seen, r) = chunks(&bad);
    let e = r.unwrap_err();
    assert!(e.code().starts_with("LMZ_FORMAT_"), "{e}");
    assert_eq!(
        e.code(),
        tiny()
            .codec
            .decompress(&mut backend(), &bad, &mut |_, _| {})
            .unwrap_err()
            .code()
    );
    assert!(seen.is_empty(), "a compact file's bytes came out before its check");
}

#[test]
fn the_sink_can_stop_the_work() {
    let file = compress(&text(1500), &multi(97));
    let mut calls = 0;
    let r = tiny()
        .codec
        .decompress_chunks(&mut backend(), &file, &mut |_, _| {}, &mut |_| {
            calls += 1;
            Err(Error::Cancelled)
        });
    assert_eq!(r.unwrap_err().code(), "LMZ_CANCELLED");
    assert_eq!(calls, 1);
}
