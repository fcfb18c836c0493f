//! Segments: where the input is cut, streamed compression (the same file as in memory), and
//! chunk-by-chunk decoding.

use crate::common::{backend, tiny};
use crate::{compress, decompress, decompress_slots, forced, multi, random, text};
use lmz::backend::cpu::CpuBackend;
use lmz::container::{info, Form, ModelUse, Options};
use lmz::tiny::Rng;

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
