//! Raw streams (for embedders that store the length themselves: the notes extension):
//! `compressRaw`, `decompressRaw`, `rawToFile` and `fileToRaw`.

use js_sys::Function;
use lmz::container;
use wasm_bindgen::prelude::*;

use crate::compressor::{bytes, Compressor, Hooks};
use crate::errors::{codes, js_error, to_js};
use crate::job::Job;

/// Raw streams (docs/FORMAT.md, "Raw stream"): `tag, check16, payload`, 3 bytes over the
/// coder's output, for an embedder that already knows the model and keeps the original
/// length beside the stream. Kept in their own `impl` block.
#[wasm_bindgen]
impl Compressor {
    /// Compresses `data` into a raw stream (one chunk, the default policy, the smallest
    /// method). `progress(done, total)` counts input bytes.
    #[wasm_bindgen(js_name = compressRaw)]
    pub async fn compress_raw(&self, data: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        self.call(Job::CompressRaw(data), progress, Hooks::default())
            .await
            .map(bytes)
    }

    /// Decodes a raw stream made by `compressRaw` from `length` bytes. `length` must be the
    /// exact original length (a JS number: a non-negative integer below 2^53).
    /// `progress(done, total)` counts output bytes.
    #[wasm_bindgen(js_name = decompressRaw)]
    pub async fn decompress_raw(
        &self,
        raw: Vec<u8>,
        length: f64,
        progress: Option<Function>,
    ) -> Result<Vec<u8>, JsValue> {
        let len = raw_length(length)?;
        self.call(Job::DecompressRaw(raw, len), progress, Hooks::default())
            .await
            .map(bytes)
    }
}

/// The standalone compact `.lmz` file (docs/FORMAT.md, "Compact form") holding the same
/// payload as a raw stream of `length` original bytes made with this build's model pack —
/// no model run: the compact form is the raw stream plus the fingerprint's first 2 bytes and
/// the length, and both carry the same check. The result opens with `lmz -d` and
/// `decompress`; a wrong `length` is caught there (`LMZ_FORMAT_CHECKSUM` or
/// `LMZ_FORMAT_CORRUPT`), never silently.
#[wasm_bindgen(js_name = rawToFile)]
pub fn raw_to_file(raw: &[u8], length: f64) -> Result<Vec<u8>, JsValue> {
    let len = raw_length(length)?;
    container::raw_to_compact(&pinned_fingerprint(), raw, len).map_err(to_js)
}

/// The raw stream inside a compact `.lmz` file made with this build's model pack, and its
/// original length: `{ raw: Uint8Array, length: number }`, the inverse of `rawToFile` — no
/// model run (`container::compact_to_raw`). An embedder that stores raw streams (the notes
/// extension importing CLI files) keeps the file's own coding. Only the header is checked
/// here: a file of another model pack is `LMZ_FORMAT_MODEL_MISMATCH`, a full-form file (not
/// one raw stream: several chunks, or a long text) `LMZ_FORMAT_CORRUPT`, a damaged header its
/// `LMZ_FORMAT_*` code; damaged payload bytes show when the stream is decoded (its check).
#[wasm_bindgen(js_name = fileToRaw, unchecked_return_type = "{ raw: Uint8Array; length: number }")]
pub fn file_to_raw(file: &[u8]) -> Result<JsValue, JsValue> {
    let info = container::info(file).map_err(to_js)?;
    let fp = pinned_fingerprint();
    if info.form == container::Form::Compact && info.fingerprint[..] != fp[..container::COMPACT_FP_BYTES] {
        return Err(to_js(lmz::Error::FormatModelMismatch {
            wanted: format!("starts with {}", lmz::pack::hex(&info.fingerprint)),
            have: lmz::pack::hex(&fp),
        }));
    }
    let (raw, len) = container::compact_to_raw(file).map_err(to_js)?;
    let out = js_sys::Object::new();
    // Setting properties on a fresh object cannot fail.
    let _ = js_sys::Reflect::set(&out, &"raw".into(), &js_sys::Uint8Array::from(&raw[..]));
    let _ = js_sys::Reflect::set(&out, &"length".into(), &JsValue::from_f64(len as f64));
    Ok(out.into())
}

/// [`lmz::pack::PACK_SHA256`] as bytes: the pack the package loads (web/src/model.ts checks
/// every download against `packFingerprint()` before `Compressor.create` sees it), so the
/// raw streams it makes are checked against this fingerprint. It is 64 lower-case hex digits.
fn pinned_fingerprint() -> [u8; 32] {
    let hex = lmz::pack::PACK_SHA256.as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        _ => (c | 0x20) - b'a' + 10,
    };
    let mut fp = [0u8; 32];
    for (i, b) in fp.iter_mut().enumerate() {
        *b = nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]);
    }
    fp
}

pub(crate) fn raw_length(length: f64) -> Result<u64, JsValue> {
    // NaN is in no range: refused too.
    if !((0.0..=9_007_199_254_740_991.0).contains(&length) && length.fract() == 0.0) {
        return Err(js_error(
            codes::INVALID_ARGUMENT,
            &format!("length {length}: the original length must be a non-negative integer below 2^53"),
        ));
    }
    Ok(length as u64)
}
