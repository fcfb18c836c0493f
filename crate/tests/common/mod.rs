//! Shared helpers for tests that need the real model pack.

#![allow(dead_code)]

use lmz::pack::Model;
use std::sync::OnceLock;

/// The real model pack (fetched by the test command). Tests that need it fail loudly, with
/// the fix, when it is absent: CI always fetches it, so nothing is silently skipped.
pub fn real_model() -> Model {
    static PACK: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = PACK.get_or_init(|| {
        let path = lmz::fetch::default_pack_path(None);
        std::fs::read(&path).unwrap_or_else(|e| panic!("model pack {} not readable ({e}): run `cargo run --release -- model fetch` first (the test command does)", path.display()))
    });
    Model::from_pack_bytes(bytes).expect("model pack is valid")
}
