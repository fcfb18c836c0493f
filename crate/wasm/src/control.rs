//! A call's control: cancel, and (threaded build) progress and chunks on their way to JS;
//! yielding to the event loop (single-threaded build); the `Stepping` engine wrapper and the
//! progress of a call.

use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "threads")]
use std::sync::Mutex;

use js_sys::Function;
use lmz::backend::{Backend, Mat, Norm};
use lmz::container::Progress;
use lmz::Error;
use wasm_bindgen::prelude::*;

/// Shared by a running call and the JS side: the cancel flag `cancel()` sets; in the
/// threaded build also the progress, decoded chunks and many-item results the call leaves for
/// the calling thread (which alone may call JS functions) to hand on, and whether the call has
/// finished.
#[derive(Default)]
pub(crate) struct Ctl {
    pub(crate) cancelled: AtomicBool,
    #[cfg(feature = "threads")]
    pub(crate) progress: Mutex<Option<(u64, u64)>>,
    #[cfg(feature = "threads")]
    pub(crate) chunks: Mutex<Vec<Vec<u8>>>,
    #[cfg(feature = "threads")]
    pub(crate) items: Mutex<Vec<(usize, ItemResult)>>,
    #[cfg(feature = "threads")]
    pub(crate) finished: AtomicBool,
}

impl Ctl {
    /// `Err(Cancelled)` once `cancel()` was called: where the library checks (every progress
    /// report and chunk) and after every forward step.
    pub(crate) fn check(&self) -> lmz::Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// One item's result as it waits for the calling thread: its bytes, or its error's code and
/// message (what `errors::to_js` makes of it there).
#[cfg(feature = "threads")]
pub(crate) type ItemResult = Result<Vec<u8>, (&'static str, String)>;

/// Locks a mutex; a poisoned one (a panic elsewhere: a bug, and the instance is given up
/// then) still gives its data.
#[cfg(feature = "threads")]
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// --- yielding to the event loop (single-threaded build) ---

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout` (a window's or a worker's).
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> JsValue;
}

/// Resolves on a later task of the event loop, after `ms` milliseconds at least, so that
/// messages (a cancel) and rendering get their turn.
pub(crate) async fn next_task(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    // A promise resolved by a timer never rejects.
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// How long the engine may keep the thread before it lets the event loop run.
#[cfg(not(feature = "threads"))]
const YIELD_EVERY_MS: f64 = 50.0;

/// The engine of a call, stopping with `Error::Cancelled` after a forward step once
/// `cancel()` was called (the library itself checks only where it reports progress: every
/// 256 decoded bytes). In the single-threaded build it also lets the event loop run between
/// steps: the wasm-CPU engine never waits by itself, so without this a worker would not see
/// a cancel message (or a page repaint) until the whole call was done. (The threaded build
/// runs the call on a pool worker, and the calling thread's event loop is free.) Every
/// operation is the inner engine's: the bits are the same.
pub(crate) struct Stepping<'a, B> {
    b: &'a mut B,
    #[cfg(not(feature = "threads"))]
    last: f64,
    ctl: &'a Ctl,
}

impl<'a, B: Backend> Stepping<'a, B> {
    pub(crate) fn new(b: &'a mut B, ctl: &'a Ctl) -> Self {
        Stepping {
            b,
            #[cfg(not(feature = "threads"))]
            last: js_sys::Date::now(),
            ctl,
        }
    }

    /// After a step's readback: lets the event loop run now and then (single-threaded build),
    /// and stops with `Error::Cancelled` once the call is cancelled.
    async fn step_done(&mut self) -> lmz::Result<()> {
        #[cfg(not(feature = "threads"))]
        if js_sys::Date::now() - self.last >= YIELD_EVERY_MS {
            next_task(0).await;
            self.last = js_sys::Date::now();
        }
        self.ctl.check()
    }
}

impl<B: Backend> Backend for Stepping<'_, B> {
    type Buf = B::Buf;
    type Q = B::Q;
    fn cache_len(&self) -> usize {
        self.b.cache_len()
    }
    fn slots(&self) -> usize {
        self.b.slots()
    }
    fn kv_map(&self) -> &lmz::backend::KvMap {
        self.b.kv_map()
    }
    fn kv_place(&mut self, slot: usize, base: usize, cap: usize, keep: usize) -> lmz::Result<()> {
        self.b.kv_place(slot, base, cap, keep)
    }
    fn kv_reset(&mut self) {
        self.b.kv_reset()
    }
    fn embed(&mut self, tokens: &[u32]) -> lmz::Result<B::Buf> {
        self.b.embed(tokens)
    }
    fn rmsnorm(&mut self, x: &B::Buf, norm: Norm) -> B::Buf {
        self.b.rmsnorm(x, norm)
    }
    fn quantize(&mut self, z: &B::Buf, frac: i32) -> B::Q {
        self.b.quantize(z, frac)
    }
    fn rmsnorm_quantize(&mut self, x: &B::Buf, norm: Norm, frac: i32) -> B::Q {
        self.b.rmsnorm_quantize(x, norm, frac)
    }
    fn matmul(&mut self, w: Mat, a: &B::Q, frac_out: i32) -> B::Buf {
        self.b.matmul(w, a, frac_out)
    }
    fn logits(&mut self, a: &B::Q) -> B::Buf {
        self.b.logits(a)
    }
    fn rope(&mut self, x: &mut B::Buf, heads: usize, pos: &[u32]) {
        self.b.rope(x, heads, pos)
    }
    fn attention(&mut self, layer: usize, q: &B::Buf, k: &B::Buf, v: &B::Buf, slot: &[u32], pos: &[u32]) -> B::Buf {
        self.b.attention(layer, q, k, v, slot, pos)
    }
    fn kv_shift(&mut self, slot: usize, src: usize, dst: usize, n: usize) -> lmz::Result<()> {
        self.b.kv_shift(slot, src, dst, n)
    }
    fn silu_mul(&mut self, gate: &B::Buf, up: &B::Buf) -> B::Buf {
        self.b.silu_mul(gate, up)
    }
    fn silu_mul_quantize(&mut self, gate: &B::Buf, up: &B::Buf) -> B::Q {
        self.b.silu_mul_quantize(gate, up)
    }
    fn add(&mut self, x: &mut B::Buf, y: &B::Buf) {
        self.b.add(x, y)
    }
    fn rows(&mut self, x: &B::Buf, idx: &[u32]) -> B::Buf {
        self.b.rows(x, idx)
    }
    fn matmuls<const N: usize>(&mut self, ws: [(Mat, i32); N], a: &B::Q) -> [B::Buf; N] {
        self.b.matmuls(ws, a)
    }
    async fn freq_runs(&mut self, logits: &B::Buf, sink: &mut lmz::backend::RunSink<'_>) -> lmz::Result<()> {
        self.b.freq_runs(logits, sink).await?;
        self.step_done().await
    }
    async fn ranges(
        &mut self,
        logits: &B::Buf,
        symbols: &[u32],
        sink: &mut dyn FnMut(usize, u32, u32) -> lmz::Result<()>,
    ) -> lmz::Result<()> {
        self.b.ranges(logits, symbols, sink).await?;
        self.step_done().await
    }
}

/// Progress of a call: straight to the JS callback (single-threaded build), or left in the
/// `Ctl` for the calling thread (threaded build); and the cancel flag back: the library stops
/// at its next report with `Error::Cancelled` (`LMZ_CANCELLED`).
pub(crate) struct CallProgress<'a> {
    #[cfg(not(feature = "threads"))]
    pub(crate) f: Option<Function>,
    pub(crate) ctl: &'a Ctl,
}

impl Progress for CallProgress<'_> {
    fn update(&mut self, done: u64, total: u64) -> lmz::Result<()> {
        #[cfg(not(feature = "threads"))]
        report(&self.f, done, total);
        #[cfg(feature = "threads")]
        {
            *lock(&self.ctl.progress) = Some((done, total));
        }
        self.ctl.check()
    }
}

/// Calls the optional JS progress callback; an exception from it is ignored (progress is a
/// report, not a control channel: use `cancel()`).
pub(crate) fn report(f: &Option<Function>, done: u64, total: u64) {
    if let Some(f) = f {
        let _ = f.call2(
            &JsValue::NULL,
            &JsValue::from_f64(done as f64),
            &JsValue::from_f64(total as f64),
        );
    }
}
