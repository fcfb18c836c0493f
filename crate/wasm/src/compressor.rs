//! The compressor: the `Compressor` class JS sees (a model and an engine), and how a call
//! runs on the calling thread (single-threaded build) or on a pool worker (threaded build).

#[cfg(feature = "threads")]
use std::cell::Cell;
#[cfg(not(feature = "threads"))]
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
#[cfg(feature = "threads")]
use std::sync::Mutex;

use js_sys::{Array, Float64Array, Function, Uint32Array, Uint8Array};
use lmz::container::Codec;
use lmz::model::Fracs;
use lmz::{Error, Model};
use wasm_bindgen::prelude::*;

#[cfg(feature = "threads")]
use crate::control::{lock, next_task, report};
use crate::control::{CallProgress, Ctl, Stepping};
#[cfg(not(feature = "threads"))]
use crate::engine::with_engine;
use crate::engine::{open, Engine};
#[cfg(feature = "threads")]
use crate::errors::js_error;
use crate::errors::{busy_error, to_js};
use crate::job::{run_job, set_slots, Job, Out};
use crate::load::Steps;
#[cfg(feature = "threads")]
use crate::PANICKED;

struct Inner {
    codec: Codec,
    fracs: Fracs,
    engine: Engine,
}

/// A model and an engine, ready to compress and decompress.
///
/// Single-threaded build: a call holds the `RefCell` borrow across its awaits on purpose:
/// that is what makes a second call during the first an `LMZ_BUSY` error (`try_borrow_mut`)
/// rather than two calls interleaving on one KV cache. Threaded build: the engine sits in a
/// mutex that the call's pool worker holds, and `busy` refuses a second call. `cancel()` only
/// touches the separate flag.
#[wasm_bindgen]
pub struct Compressor {
    #[cfg(not(feature = "threads"))]
    inner: RefCell<Inner>,
    #[cfg(feature = "threads")]
    inner: Arc<Mutex<Inner>>,
    #[cfg(feature = "threads")]
    busy: Cell<bool>,
    ctl: Arc<Ctl>,
    engine: String,
    /// The GPU engine's adapter; `None`: the CPU engine (see `adapter()`).
    adapter: Option<String>,
}

/// How often (ms) the calling thread looks at a call running on the pool (threaded build).
#[cfg(feature = "threads")]
const POLL_MS: i32 = 4;

/// Where a call's output goes besides its result: `onChunk` (decompressChunks); for the
/// many-item calls, `onItem(index, bytes | error)` and the array that collects every item's
/// result at its index.
#[derive(Default, Clone, Copy)]
pub(crate) struct Hooks<'a> {
    pub(crate) on_chunk: Option<&'a Function>,
    pub(crate) on_item: Option<&'a Function>,
    pub(crate) items: Option<&'a Array>,
}

impl Hooks<'_> {
    /// Hands the call's chunk to `onChunk`; remembers what it throws (the call then stops).
    fn chunk(&self, c: &[u8], thrown: &mut Option<JsValue>) -> lmz::Result<()> {
        if let (Some(f), None) = (self.on_chunk, &thrown) {
            if let Err(e) = f.call1(&JsValue::NULL, &Uint8Array::from(c)) {
                *thrown = Some(e);
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }

    /// Puts item `i`'s result (a fresh `Uint8Array`, or a JS `Error` whose `name` and `code`
    /// are its `LMZ_*` code) at its index and hands it to `onItem`; remembers what `onItem`
    /// throws (the call then stops).
    fn item(&self, i: usize, value: JsValue, thrown: &mut Option<JsValue>) -> lmz::Result<()> {
        if let Some(a) = self.items {
            a.set(i as u32, value.clone());
        }
        if let (Some(f), None) = (self.on_item, &thrown) {
            if let Err(e) = f.call2(&JsValue::NULL, &JsValue::from_f64(i as f64), &value) {
                *thrown = Some(e);
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }
}

/// An item's result as JS sees it.
#[cfg(not(feature = "threads"))]
fn item_value(r: lmz::Result<Vec<u8>>) -> JsValue {
    match r {
        Ok(b) => Uint8Array::from(&b[..]).into(),
        Err(e) => to_js(e),
    }
}

impl Compressor {
    /// Runs `job` on the engine, in the calling thread, yielding to its event loop between
    /// forward steps.
    #[cfg(not(feature = "threads"))]
    #[allow(clippy::await_holding_refcell_ref)] // deliberate: see the struct's doc
    pub(crate) async fn call(&self, job: Job, progress: Option<Function>, hooks: Hooks<'_>) -> Result<Out, JsValue> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| busy_error())?;
        self.ctl.cancelled.store(false, Ordering::Relaxed);
        let Inner { codec, fracs, engine } = &mut *guard;
        let ctl = &*self.ctl;
        let mut p = CallProgress { f: progress, ctl };
        // The two sinks never run at once (a call has one kind of output), but each borrows
        // what `onChunk`/`onItem` threw: a cell shares it.
        let thrown = RefCell::new(None);
        let mut sink = |c: &[u8]| -> lmz::Result<()> {
            hooks.chunk(c, &mut thrown.borrow_mut())?;
            ctl.check()
        };
        let mut items = |i: usize, r: lmz::Result<Vec<u8>>| -> lmz::Result<()> {
            hooks.item(i, item_value(r), &mut thrown.borrow_mut())?;
            ctl.check()
        };
        let slots = job.slots(codec.default_policy().window);
        set_slots(engine, slots).map_err(to_js)?;
        let r = with_engine!(engine, b => run_job(codec, fracs, &mut Stepping::new(b, ctl), job, &mut p, &mut sink, &mut items).await);
        // Between calls: one slot, whatever the call gave.
        set_slots(engine, 1).map_err(to_js)?;
        match (r, thrown.into_inner()) {
            (_, Some(e)) => Err(e),
            (r, None) => r.map_err(to_js),
        }
    }

    /// Runs `job` on a worker of the pool, where the engine's parallel loops split without
    /// crossing threads at every step; this thread's event loop stays free and forwards the
    /// job's progress and chunks to JS every few milliseconds.
    #[cfg(feature = "threads")]
    pub(crate) async fn call(&self, job: Job, progress: Option<Function>, hooks: Hooks<'_>) -> Result<Out, JsValue> {
        if self.busy.replace(true) {
            return Err(busy_error());
        }
        let ctl = self.ctl.clone();
        ctl.cancelled.store(false, Ordering::Relaxed);
        ctl.finished.store(false, Ordering::Relaxed);
        *lock(&ctl.progress) = None;
        lock(&ctl.chunks).clear();
        lock(&ctl.items).clear();
        let result: Arc<Mutex<Option<lmz::Result<Out>>>> = Arc::default();
        let (inner, c, out) = (self.inner.clone(), ctl.clone(), result.clone());
        rayon::spawn(move || {
            let mut guard = lock(&inner);
            let Inner { codec, fracs, engine } = &mut *guard;
            let slots = job.slots(codec.default_policy().window);
            let mut p = CallProgress { ctl: &c };
            let mut sink = |chunk: &[u8]| -> lmz::Result<()> {
                lock(&c.chunks).push(chunk.to_vec());
                c.check()
            };
            let mut items = |i: usize, r: lmz::Result<Vec<u8>>| -> lmz::Result<()> {
                lock(&c.items).push((i, r.map_err(|e| (e.code(), e.to_string()))));
                c.check()
            };
            // The CPU engine's futures never wait: the library's block_on polls once.
            let r = set_slots(engine, slots).and_then(|()| {
                let Engine::Cpu(b) = &mut *engine;
                lmz::model::block_on(run_job(
                    codec,
                    fracs,
                    &mut Stepping::new(b, &c),
                    job,
                    &mut p,
                    &mut sink,
                    &mut items,
                ))
            });
            let back = set_slots(engine, 1); // between calls: one slot, whatever the call gave
            let r = r.and_then(|out| back.map(|()| out));
            *lock(&out) = Some(r);
            c.finished.store(true, Ordering::Release);
        });
        let mut thrown = None;
        let mut last = None;
        loop {
            next_task(POLL_MS).await;
            // Read before the chunks and items: every one of a finished call is in its list by then.
            let finished = ctl.finished.load(Ordering::Acquire);
            let chunks = std::mem::take(&mut *lock(&ctl.chunks));
            for chunk in &chunks {
                if hooks.chunk(chunk, &mut thrown).is_err() {
                    ctl.cancelled.store(true, Ordering::Relaxed);
                }
            }
            let items = std::mem::take(&mut *lock(&ctl.items));
            for (i, r) in items {
                let value = match r {
                    Ok(b) => Uint8Array::from(&b[..]).into(),
                    Err((code, message)) => js_error(code, &message),
                };
                if hooks.item(i, value, &mut thrown).is_err() {
                    ctl.cancelled.store(true, Ordering::Relaxed);
                }
            }
            let now = *lock(&ctl.progress);
            if let (Some((done, total)), true) = (now, now != last) {
                report(&progress, done, total);
                last = now;
            }
            if finished {
                break;
            }
            if PANICKED.load(Ordering::Acquire) {
                // `busy` stays set: the engine's state is unknown (the package refuses the
                // instance after LMZ_INTERNAL anyway).
                return Err(js_error("LMZ_INTERNAL", "the engine panicked on a pool worker (a bug: the console has its message); this compressor cannot be used any more"));
            }
        }
        self.busy.set(false);
        let r = lock(&result).take();
        match (r, thrown) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => r.map_err(to_js),
            (None, None) => Err(js_error("LMZ_INTERNAL", "the pool worker finished without a result")),
        }
    }
}

/// The bytes of a call that makes bytes.
pub(crate) fn bytes(out: Out) -> Vec<u8> {
    match out {
        Out::Bytes(b) => b,
        Out::Done | Out::Scores { .. } => Vec::new(),
    }
}

#[wasm_bindgen]
impl Compressor {
    /// Parses the model pack (its SHA-256 is computed again here and becomes the files'
    /// fingerprint) and opens the engine. `pack` is moved into wasm memory and freed once the
    /// engine holds its own copy of the weights. `onStep(name, ms)`, if given, hears how long
    /// each step took: `rehash`, `parse`, `codec`, `engine`.
    pub async fn create(pack: Vec<u8>, engine: String, on_step: Option<Function>) -> Result<Compressor, JsValue> {
        let mut steps = Steps::new(on_step);
        let fingerprint = lmz::pack::sha256(&pack);
        steps.done("rehash")?;
        Self::open_pack(pack, fingerprint, &engine, steps).await
    }

    /// [`Compressor::create`] for a pack the caller has already checked: its SHA-256 is
    /// `fingerprint` (lower-case hex), which must be this build's `packFingerprint()` — the
    /// package checks every pack against it (SubtleCrypto) before use — so the pack is not
    /// hashed again here (in wasm that takes longer than the rest of the load). Any other
    /// `fingerprint` is refused with `LMZ_HASH_MISMATCH`: files name the pinned pack only.
    /// Steps timed: `parse`, `codec`, `engine`.
    #[wasm_bindgen(js_name = createVerified)]
    pub async fn create_verified(
        pack: Vec<u8>,
        engine: String,
        fingerprint: String,
        on_step: Option<Function>,
    ) -> Result<Compressor, JsValue> {
        let steps = Steps::new(on_step);
        if fingerprint != lmz::pack::PACK_SHA256 {
            return Err(to_js(Error::HashMismatch {
                what: "the model pack given to createVerified".into(),
                expected: lmz::pack::PACK_SHA256.into(),
                actual: fingerprint,
            }));
        }
        Self::open_pack(pack, lmz::pack::PACK_SHA256_BYTES, &engine, steps).await
    }

    /// Parses `pack`, whose SHA-256 is `fingerprint`, frees it and opens the engine `engine`.
    async fn open_pack(
        pack: Vec<u8>,
        fingerprint: [u8; 32],
        engine: &str,
        mut steps: Steps,
    ) -> Result<Compressor, JsValue> {
        let model = Model::from_hashed_pack(&pack, fingerprint).map_err(to_js)?;
        drop(pack);
        steps.done("parse")?;
        let codec = Codec::new(&model).map_err(to_js)?;
        let fracs = Fracs::new(&model.weights);
        let cache_len = codec.default_policy().window;
        steps.done("codec")?;
        let (engine_impl, name) = open(engine, model, cache_len).await?;
        steps.done("engine")?;
        // The CPU engine's words are made when asked for (`adapter`): nothing here may touch
        // rayon, whose pool the threaded build may still be starting.
        let adapter = match &engine_impl {
            Engine::Cpu(_) => None,
            #[cfg(feature = "gpu")]
            Engine::Gpu(g) => Some(g.describe()),
        };
        let inner = Inner {
            codec,
            fracs,
            engine: engine_impl,
        };
        Ok(Compressor {
            #[cfg(not(feature = "threads"))]
            inner: RefCell::new(inner),
            #[cfg(feature = "threads")]
            inner: Arc::new(Mutex::new(inner)),
            #[cfg(feature = "threads")]
            busy: Cell::new(false),
            ctl: Arc::default(),
            engine: name,
            adapter,
        })
    }

    /// `"webgpu"` or `"cpu"`: the engine that actually runs.
    #[wasm_bindgen(getter)]
    pub fn engine(&self) -> String {
        self.engine.clone()
    }

    /// The adapter (WebGPU: its description, backend and dot4 variant) or "wasm32 CPU
    /// (KERNELS), N thread(s)" (KERNELS: `RelaxedSimd` or `Simd128`, the build the page
    /// loaded; N: 1, or the threaded build's pool, so ask once `initThreadPool` has resolved:
    /// asking before would make rayon start a pool of its own, of one thread).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone().unwrap_or_else(|| {
            let n = lmz::backend::cpu::threads();
            format!(
                "wasm32 CPU ({:?}), {n} thread{}",
                lmz::backend::cpu::Isa::best(),
                if n == 1 { "" } else { "s" }
            )
        })
    }

    /// The model fingerprint (hex) this compressor writes into files.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        #[cfg(not(feature = "threads"))]
        let inner = self.inner.try_borrow().ok();
        #[cfg(feature = "threads")]
        let inner = self.inner.try_lock().ok();
        inner.map(|i| lmz::pack::hex(i.codec.fingerprint())).unwrap_or_default()
    }

    /// Asks the running call to stop at its next progress step; it then rejects with
    /// `LMZ_CANCELLED`.
    pub fn cancel(&self) {
        self.ctl.cancelled.store(true, Ordering::Relaxed);
    }

    /// Compresses `data` into a `.lmz` file. `progress(done, total)` counts input bytes.
    pub async fn compress(&self, data: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        self.call(Job::Compress(data), progress, Hooks::default())
            .await
            .map(bytes)
    }

    /// Decompresses a `.lmz` file (made here or by the CLI). `progress(done, total)` counts
    /// output bytes.
    pub async fn decompress(&self, file: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        self.call(Job::Decompress(file), progress, Hooks::default())
            .await
            .map(bytes)
    }

    /// Decompresses a `.lmz` file chunk by chunk (the package's `decompressStream`):
    /// `onChunk(bytes)` gets each chunk's original as a fresh `Uint8Array`, in file order, as
    /// soon as that chunk is decoded; the promise resolves after the last one once the
    /// checksum of the whole original has been verified (`Codec::decompress_chunks_async`
    /// says what is checked when: a checksum mismatch rejects after every chunk was handed
    /// out). An exception thrown by `onChunk` stops the work and rejects with it.
    /// `progress(done, total)` counts output bytes.
    #[wasm_bindgen(js_name = decompressChunks)]
    pub async fn decompress_chunks(
        &self,
        file: Vec<u8>,
        progress: Option<Function>,
        on_chunk: Function,
    ) -> Result<(), JsValue> {
        self.call(
            Job::DecompressChunks(file),
            progress,
            Hooks {
                on_chunk: Some(&on_chunk),
                ..Hooks::default()
            },
        )
        .await
        .map(|_| ())
    }

    /// The bits the model spends on each token of `data`, for a heat map: an object
    /// `{ lengths: Uint32Array, bits: Float64Array }` where token `i` spells the next
    /// `lengths[i]` bytes of `data` (0 for the escape token of an escape pair; its partner
    /// spells the byte) and costs `bits[i] = log2(2^24 / freq)` under the tables a `.lmz` of
    /// one chunk is coded with (the note frame, compact tag 0xFE: the frame's known tokens
    /// run first and are left out; a text of several chunks: the default policy, as one
    /// sequence). `progress(done, total)` counts tokens.
    pub async fn score(&self, data: Vec<u8>, progress: Option<Function>) -> Result<JsValue, JsValue> {
        let (lengths, bits) = match self.call(Job::Score(data), progress, Hooks::default()).await? {
            Out::Scores { lengths, bits } => (lengths, bits),
            Out::Bytes(_) | Out::Done => (Vec::new(), Vec::new()),
        };
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"lengths".into(), &Uint32Array::from(&lengths[..]));
        let _ = js_sys::Reflect::set(&out, &"bits".into(), &Float64Array::from(&bits[..]));
        Ok(out.into())
    }
}
