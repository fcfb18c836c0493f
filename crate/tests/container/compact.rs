//! The compact form: its few bytes over the coder's, and raw streams turned into compact files.

use crate::common::{backend, tiny};
use crate::{compress, decompress, forced, random, text};
use lmz::backend::cpu::CpuBackend;
use lmz::container::{info, Codec, Form, ModelUse, Options};
use lmz::tiny::{tiny_model, TinyShape};

#[test]
fn compact_forms_cost_few_bytes_over_the_coder() {
    let t = tiny();
    let note = text(200);
    let raw = t
        .codec
        .compress_raw(&mut backend(), &note, ModelUse::Force, &mut |_, _| {})
        .unwrap();
    // One chunk: the note frame's tag.
    assert_eq!(raw[0], lmz::container::TAG_MODEL_CHAT);
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
        lmz::container::raw_to_compact(fp, &[0xFF, 1, 2], 0).unwrap_err().code(),
        "LMZ_FORMAT_UNSUPPORTED_VERSION"
    );
}
