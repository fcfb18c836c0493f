//! Many items in one call: `decompressMany`, `decompressRawMany`, `compressMany`,
//! `compressRawMany` (the library's `Codec::*_many_async`: short streams decoded in lock-step,
//! one forward pass per step for all of them).
//!
//! Each resolves with an array in item order whose element `i` is item `i`'s bytes (a
//! `Uint8Array`) or its error (a JS `Error` whose `name` and `code` are its `LMZ_*` code): one
//! corrupt item fails alone. `onItem(index, bytes | error)` gets each element as soon as it is
//! known (in any order). The call itself rejects only for what stops every item: a
//! cancellation (`LMZ_CANCELLED`), an engine error, an exception thrown by `onItem` (rejected
//! with it), or bad arguments (`LMZ_INVALID_ARGUMENT`).

use js_sys::{Array, Function, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::compressor::{Compressor, Hooks};
use crate::errors::{codes, js_error};
use crate::job::Job;
use crate::raw::raw_length;

/// Each element of `a` as bytes; anything but a `Uint8Array` is `LMZ_INVALID_ARGUMENT`.
fn byte_arrays(a: &Array, what: &str) -> Result<Vec<Vec<u8>>, JsValue> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.dyn_into::<Uint8Array>()
                .map(|u| u.to_vec())
                .map_err(|_| js_error(codes::INVALID_ARGUMENT, &format!("{what}[{i}] is not a Uint8Array")))
        })
        .collect()
}

impl Compressor {
    /// Runs a many-item job of `n` items; the array of their results in item order.
    async fn many(
        &self,
        job: Job,
        n: usize,
        progress: Option<Function>,
        on_item: Option<Function>,
    ) -> Result<Array, JsValue> {
        let items = Array::new_with_length(n as u32);
        let hooks = Hooks {
            on_item: on_item.as_ref(),
            items: Some(&items),
            ..Hooks::default()
        };
        self.call(job, progress, hooks).await?;
        Ok(items)
    }
}

#[wasm_bindgen]
impl Compressor {
    /// Decompresses many `.lmz` files (any form, made here or by the CLI) in one call; files
    /// of one model chunk (every short text) are decoded in lock-step. Element `i` of the
    /// result: file `i`'s original, checked as `decompress` checks it, or its error.
    /// `progress(done, total)` counts output bytes over all files.
    #[wasm_bindgen(js_name = decompressMany, unchecked_return_type = "Array<Uint8Array | Error>")]
    pub async fn decompress_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] files: Array,
        progress: Option<Function>,
        #[wasm_bindgen(unchecked_param_type = "((index: number, result: Uint8Array | Error) => void) | undefined")]
        on_item: Option<Function>,
    ) -> Result<Array, JsValue> {
        let files = byte_arrays(&files, "files")?;
        let n = files.len();
        self.many(Job::DecompressMany(files), n, progress, on_item).await
    }

    /// Decodes many raw streams (made by `compressRaw`) of `lengths[i]` original bytes each,
    /// in lock-step. With `prefix` (a whole number of bytes), each model-coded stream stops
    /// once it has spelled at least that many: element `i` is then the first bytes of the
    /// original (at least `prefix`, unless the original is shorter; possibly ending inside a
    /// UTF-8 character) and is not checked — the check covers the whole original. Elements of
    /// the stated length were checked. `progress(done, total)` counts output bytes.
    #[wasm_bindgen(js_name = decompressRawMany, unchecked_return_type = "Array<Uint8Array | Error>")]
    pub async fn decompress_raw_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] raws: Array,
        lengths: Vec<f64>,
        prefix: Option<f64>,
        progress: Option<Function>,
        #[wasm_bindgen(unchecked_param_type = "((index: number, result: Uint8Array | Error) => void) | undefined")]
        on_item: Option<Function>,
    ) -> Result<Array, JsValue> {
        let raws = byte_arrays(&raws, "raws")?;
        if lengths.len() != raws.len() {
            return Err(js_error(
                codes::INVALID_ARGUMENT,
                &format!(
                    "{} raw streams but {} lengths: give one length per stream",
                    raws.len(),
                    lengths.len()
                ),
            ));
        }
        let lengths = lengths.into_iter().map(raw_length).collect::<Result<Vec<_>, _>>()?;
        let prefix = prefix.map(raw_length).transpose()?;
        let n = raws.len();
        let items = raws.into_iter().zip(lengths).collect();
        self.many(Job::DecompressRawMany(items, prefix), n, progress, on_item)
            .await
    }

    /// Compresses many inputs into `.lmz` files; element `i` is exactly what `compress` makes
    /// of input `i` (the CLI's bytes), or its error. `progress(done, total)` counts input bytes.
    #[wasm_bindgen(js_name = compressMany, unchecked_return_type = "Array<Uint8Array | Error>")]
    pub async fn compress_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] items: Array,
        progress: Option<Function>,
        #[wasm_bindgen(unchecked_param_type = "((index: number, result: Uint8Array | Error) => void) | undefined")]
        on_item: Option<Function>,
    ) -> Result<Array, JsValue> {
        let items = byte_arrays(&items, "items")?;
        let n = items.len();
        self.many(Job::CompressMany(items), n, progress, on_item).await
    }

    /// Compresses many inputs into raw streams; element `i` is exactly what `compressRaw`
    /// makes of input `i`, or its error. `progress(done, total)` counts input bytes.
    #[wasm_bindgen(js_name = compressRawMany, unchecked_return_type = "Array<Uint8Array | Error>")]
    pub async fn compress_raw_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] items: Array,
        progress: Option<Function>,
        #[wasm_bindgen(unchecked_param_type = "((index: number, result: Uint8Array | Error) => void) | undefined")]
        on_item: Option<Function>,
    ) -> Result<Array, JsValue> {
        let items = byte_arrays(&items, "items")?;
        let n = items.len();
        self.many(Job::CompressRawMany(items), n, progress, on_item).await
    }
}
