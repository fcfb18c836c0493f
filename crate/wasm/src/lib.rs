//! lmz in the browser: wasm-bindgen bindings over the same library the CLI uses.
//!
//! What JS sees (the npm package `web/` wraps it; nothing else should call it directly):
//! - `packFingerprint()`: the SHA-256 (hex) of the one model pack this build decodes with;
//!   the package checks downloaded weights against it with SubtleCrypto before use.
//! - `info(bytes)`: a `.lmz` header as a plain object (no model needed).
//! - `Compressor.create(pack, engine, onStep?)`: hashes and parses the pack and builds an
//!   engine — `"webgpu"` (wgpu's browser backend on the WGSL kernels of `shaders/`), `"cpu"`
//!   (the integer CPU kernels compiled to wasm) or `"auto"` (a hardware WebGPU adapter when
//!   there is one, else the CPU: a software adapter such as SwiftShader is slower than
//!   wasm-CPU). Both engines give the same bits, so the choice never changes a file.
//!   `Compressor.createVerified(pack, engine, fingerprint, onStep?)`: the same for a pack the
//!   package has already checked against `packFingerprint()` (the only fingerprint it
//!   takes), without hashing it again. `onStep(name, ms)` hears each step's time (`load.rs`).
//! - `compress`, `decompress`, `decompressChunks` (the original chunk by chunk, for the
//!   package's `decompressStream`), `score` on a `Compressor`, each returning a Promise, with
//!   a progress callback `(done, total)` and `cancel()`.
//! - Many items in one call (`many.rs`): `decompressMany`, `decompressRawMany` (with a
//!   `prefix` for titles), `compressMany`, `compressRawMany`; each item's result (bytes, or
//!   its own `LMZ_*` error) to `onItem(index, result)` as soon as it is known, and all in
//!   item order at the end.
//! - Raw streams (`raw.rs`): `compressRaw`, `decompressRaw`, and without a model `rawToFile`
//!   and `fileToRaw` (a compact file ↔ its raw stream and length).
//!
//! - `initThreadPool(n)` (the threaded build only, from wasm-bindgen-rayon): starts `n` Web
//!   Workers that share this module's memory as rayon's global pool, which the CPU kernels'
//!   parallel loops then run on. Once per module, in a Worker (the calling thread blocks
//!   while a loop runs, and a page's main thread may not), before `Compressor.create`.
//!
//! Errors cross as JS `Error`s whose `name` and `code` are the library's stable
//! `Error::code()` (`LMZ_FORMAT_CHECKSUM`, …), never a panic string; the bindings' own
//! errors use codes of the same shape (listed in [`codes`]).
//!
//! On other targets this crate is empty.
#![cfg(target_arch = "wasm32")]

mod compressor;
mod control;
mod engine;
mod errors;
mod info;
mod job;
mod load;
mod many;
mod raw;

#[cfg(feature = "threads")]
use std::sync::atomic::{AtomicBool, Ordering};

use wasm_bindgen::prelude::*;
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

pub use compressor::Compressor;
pub use errors::codes;
pub use info::{info, pack_fingerprint, version};
pub use raw::{file_to_raw, raw_to_file};

#[wasm_bindgen(start)]
fn start() {
    // A panic is a bug; this turns its message into a console error instead of
    // "unreachable executed". Errors callers can act on never panic (they are `Result`s).
    #[cfg(not(feature = "threads"))]
    console_error_panic_hook::set_once();
    // Threaded build (this runs on every thread; the hook is the process's): a panic aborts
    // only the pool worker it happens on, so it also raises a flag the calling thread polls,
    // which then rejects with LMZ_INTERNAL instead of waiting forever.
    #[cfg(feature = "threads")]
    {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                PANICKED.store(true, Ordering::Release);
                console_error_panic_hook::hook(info);
            }))
        });
    }
}

/// Set by the panic hook (threaded build): a pool worker died in a call.
#[cfg(feature = "threads")]
static PANICKED: AtomicBool = AtomicBool::new(false);
