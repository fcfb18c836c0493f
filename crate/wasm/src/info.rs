//! What a build and a `.lmz` file say: `packFingerprint()`, `version()`, `info(bytes)`.

use lmz::container::{self, Form, Method};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::errors::{js_error, to_js};

/// The SHA-256 (lower-case hex) of the model pack this build was made for.
#[wasm_bindgen(js_name = packFingerprint)]
pub fn pack_fingerprint() -> String {
    lmz::pack::PACK_SHA256.to_string()
}

/// The library's version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InfoJs {
    form: &'static str,
    version: u32,
    /// Hex: the whole SHA-256 (full form) or its first bytes (compact form).
    fingerprint: String,
    original_length: f64,
    compressed_length: f64,
    checksum: u32,
    window: Option<u32>,
    stride: Option<u32>,
    /// Whether the model's tables are reweighted by the adaptive bias (docs/FORMAT.md).
    adapt: bool,
    /// Whether the n-gram mixer follows the bias (docs/FORMAT.md).
    ngram: bool,
    bpb: f64,
    chunks: Vec<ChunkJs>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChunkJs {
    method: &'static str,
    original_length: f64,
    stored_length: f64,
}

/// What a `.lmz` file's header says: form, version, model fingerprint, sizes, chunks.
/// Lengths are JS numbers (exact below 2^53, which no header that passed the checks exceeds
/// for data a browser holds).
#[wasm_bindgen]
pub fn info(file: &[u8]) -> Result<JsValue, JsValue> {
    let i = container::info(file).map_err(to_js)?;
    let js = InfoJs {
        form: match i.form {
            Form::Full => "full",
            Form::Compact => "compact",
        },
        version: i.version,
        fingerprint: lmz::pack::hex(&i.fingerprint),
        original_length: i.original_len as f64,
        compressed_length: i.compressed_len as f64,
        checksum: i.checksum,
        window: i.window_stride.map(|w| w.0),
        stride: i.window_stride.map(|w| w.1),
        adapt: i.adapt,
        ngram: i.ngram,
        bpb: i.bpb(),
        chunks: i
            .chunks
            .iter()
            .map(|c| ChunkJs {
                method: match c.method {
                    Method::Stored => "stored",
                    Method::Zstd => "zstd",
                    Method::Model => "model",
                },
                original_length: c.original_len as f64,
                stored_length: c.stored_len as f64,
            })
            .collect(),
    };
    serde_wasm_bindgen::to_value(&js).map_err(|e| js_error("LMZ_INTERNAL", &e.to_string()))
}
