//! lmz in the browser: wasm-bindgen bindings over the same library the CLI uses.
//!
//! What JS sees (the npm package `web/` wraps it; nothing else should call it directly):
//! - `packFingerprint()`: the SHA-256 (hex) of the one model pack this build decodes with;
//!   the package checks downloaded weights against it with SubtleCrypto before use.
//! - `info(bytes)`: a `.lmz` header as a plain object (no model needed).
//! - `Compressor.create(pack, engine)`: parses the pack and builds an engine — `"webgpu"`
//!   (wgpu's browser backend on the WGSL kernels of `shaders/`), `"cpu"` (the integer CPU
//!   kernels compiled to wasm) or `"auto"` (a hardware WebGPU adapter when there is one, else
//!   the CPU: a software adapter such as SwiftShader is slower than wasm-CPU). Both engines
//!   give the same bits, so the choice never changes a file.
//! - `compress`, `decompress`, `decompressChunks` (the original chunk by chunk, for the
//!   package's `decompressStream`), `score` on a `Compressor`, each returning a Promise, with
//!   a progress callback `(done, total)` and `cancel()`.
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

#[cfg(feature = "threads")]
use std::cell::Cell;
#[cfg(not(feature = "threads"))]
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(feature = "threads")]
use std::sync::Mutex;

use js_sys::{Float64Array, Function, Uint32Array, Uint8Array};
use lmz::backend::cpu::CpuBackend;
#[cfg(feature = "gpu")]
use lmz::backend::gpu::{self, Auto, Gpu, GpuBackend, GpuOptions};
use lmz::backend::{Backend, Mat, Norm};
use lmz::container::{self, Codec, Form, Method, Options, Progress};
use lmz::eval::Policy;
use lmz::model::Fracs;
use lmz::{Error, Model};
use serde::Serialize;
use wasm_bindgen::prelude::*;
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Codes of errors that the bindings raise themselves (the library's are `Error::code()`).
pub mod codes {
    /// A second call on a `Compressor` while one is running (the package queues calls).
    pub const BUSY: &str = "LMZ_BUSY";
    /// `engine` is not one of "auto", "webgpu", "cpu".
    pub const INVALID_ARGUMENT: &str = "LMZ_INVALID_ARGUMENT";
}

/// Sequence slots the engine opens with (a call on a file of several model chunks takes up to
/// `DECODE_SLOTS` for its duration: [`Job::slots`]); positions per slot: the default policy's
/// window.
const SLOTS: usize = 1;

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

/// A JS `Error` with `name` = `code` = `code`.
fn js_error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name(code);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

fn to_js(e: Error) -> JsValue {
    js_error(e.code(), &e.to_string())
}

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

// --- engines ---

// One per compressor, so the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Cpu(CpuBackend),
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuBackend>),
}

/// Runs `$body` with `$b` bound to the engine inside (`&mut` of its concrete type).
#[cfg(not(feature = "threads"))]
macro_rules! with_engine {
    ($e:expr, $b:ident => $body:expr) => {
        match $e {
            Engine::Cpu($b) => $body,
            #[cfg(feature = "gpu")]
            Engine::Gpu($b) => {
                let $b = &mut **$b;
                $body
            }
        }
    };
}

/// A GPU error in the browser's words: the library's messages for `LMZ_GPU_NO_ADAPTER` and
/// `LMZ_GPU_LIMITS` give CLI advice (`--backend cpu`, install a Vulkan driver); the code
/// stays, the advice is the package's `engine` option. Other errors pass unchanged.
#[cfg(feature = "gpu")]
fn gpu_to_js(e: Error) -> JsValue {
    let fix = "use engine: 'cpu', or 'auto', which runs on the CPU when WebGPU cannot";
    match &e {
        Error::GpuLimits { adapter, what } => {
            let name = if adapter.is_empty() {
                String::new()
            } else {
                format!(" ({adapter})")
            };
            js_error(
                e.code(),
                &format!("the WebGPU adapter{name} is too small for this model: {what}; {fix}"),
            )
        }
        Error::GpuNoAdapter(why) => js_error(
            e.code(),
            &format!("this browser offers no WebGPU adapter ({why}); {fix}"),
        ),
        _ => to_js(e),
    }
}

/// Opens the engine `kind` names. `auto`: a hardware WebGPU adapter, else the CPU.
#[cfg(feature = "gpu")]
async fn open(kind: &str, model: &Model, cache_len: usize) -> Result<(Engine, String), JsValue> {
    let cpu = |m: &Model| {
        CpuBackend::with_slots(m, SLOTS, cache_len)
            .map(|b| (Engine::Cpu(b), "cpu".to_string()))
            .map_err(to_js)
    };
    match kind {
        "cpu" => cpu(model),
        "webgpu" => {
            let g = Gpu::new_async(GpuOptions::default()).await.map_err(gpu_to_js)?;
            let b = GpuBackend::on(g, model, SLOTS, cache_len).map_err(gpu_to_js)?;
            Ok((Engine::Gpu(Box::new(b)), "webgpu".to_string()))
        }
        // The library's rule (`lmz::backend::gpu::auto`), the CLI's too.
        "auto" => match gpu::auto(Gpu::new_async(GpuOptions::default()).await).map_err(to_js)? {
            Auto::Gpu(g) => match GpuBackend::on(*g, model, SLOTS, cache_len) {
                Ok(b) => Ok((Engine::Gpu(Box::new(b)), "webgpu".to_string())),
                Err(e) if gpu::auto_falls_back(&e) => cpu(model),
                Err(e) => Err(to_js(e)),
            },
            Auto::Cpu(_) => cpu(model),
        },
        other => Err(js_error(
            codes::INVALID_ARGUMENT,
            &format!("engine {other:?}: use \"auto\", \"webgpu\" or \"cpu\""),
        )),
    }
}

/// Opens the engine `kind` names, in a build without the GPU engine (the threaded one: the
/// package loads it for the CPU engine only, and `auto` is the CPU here).
#[cfg(not(feature = "gpu"))]
async fn open(kind: &str, model: &Model, cache_len: usize) -> Result<(Engine, String), JsValue> {
    match kind {
        "cpu" | "auto" => CpuBackend::with_slots(model, SLOTS, cache_len).map(|b| (Engine::Cpu(b), "cpu".to_string())).map_err(to_js),
        "webgpu" => Err(js_error(Error::GpuNoAdapter(String::new()).code(), "this build of lmz (the threaded wasm-CPU one) has no WebGPU engine; the package loads the other build for engine: 'webgpu'")),
        other => Err(js_error(codes::INVALID_ARGUMENT, &format!("engine {other:?}: use \"auto\", \"webgpu\" or \"cpu\""))),
    }
}

// --- a call's control: cancel, and (threaded build) progress and chunks on their way to JS ---

/// Shared by a running call and the JS side: the cancel flag `cancel()` sets; in the
/// threaded build also the progress and decoded chunks the call leaves for the calling thread
/// (which alone may call JS functions) to hand on, and whether the call has finished.
#[derive(Default)]
struct Ctl {
    cancelled: AtomicBool,
    #[cfg(feature = "threads")]
    progress: Mutex<Option<(u64, u64)>>,
    #[cfg(feature = "threads")]
    chunks: Mutex<Vec<Vec<u8>>>,
    #[cfg(feature = "threads")]
    finished: AtomicBool,
}

impl Ctl {
    /// `Err(Cancelled)` once `cancel()` was called: where the library checks (every progress
    /// report and chunk) and after every forward step.
    fn check(&self) -> lmz::Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// Locks a mutex; a poisoned one (a panic elsewhere: a bug, and the instance is given up
/// then) still gives its data.
#[cfg(feature = "threads")]
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
async fn next_task(ms: i32) {
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
struct Stepping<'a, B> {
    b: &'a mut B,
    #[cfg(not(feature = "threads"))]
    last: f64,
    ctl: &'a Ctl,
}

impl<'a, B: Backend> Stepping<'a, B> {
    fn new(b: &'a mut B, ctl: &'a Ctl) -> Self {
        Stepping {
            b,
            #[cfg(not(feature = "threads"))]
            last: js_sys::Date::now(),
            ctl,
        }
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
    fn embed(&mut self, tokens: &[u32]) -> lmz::Result<B::Buf> {
        self.b.embed(tokens)
    }
    fn rmsnorm(&mut self, x: &B::Buf, norm: Norm) -> B::Buf {
        self.b.rmsnorm(x, norm)
    }
    fn quantize(&mut self, z: &B::Buf, frac: i32) -> B::Q {
        self.b.quantize(z, frac)
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
    fn add(&mut self, x: &mut B::Buf, y: &B::Buf) {
        self.b.add(x, y)
    }
    fn rows(&mut self, x: &B::Buf, idx: &[u32]) -> B::Buf {
        self.b.rows(x, idx)
    }
    async fn freqs(
        &mut self,
        logits: &B::Buf,
        sink: &mut dyn FnMut(usize, &[u32]) -> lmz::Result<()>,
    ) -> lmz::Result<()> {
        self.b.freqs(logits, sink).await?;
        #[cfg(not(feature = "threads"))]
        if js_sys::Date::now() - self.last >= YIELD_EVERY_MS {
            next_task(0).await;
            self.last = js_sys::Date::now();
        }
        self.ctl.check()
    }
}

/// Progress of a call: straight to the JS callback (single-threaded build), or left in the
/// `Ctl` for the calling thread (threaded build); and the cancel flag back: the library stops
/// at its next report with `Error::Cancelled` (`LMZ_CANCELLED`).
struct CallProgress<'a> {
    #[cfg(not(feature = "threads"))]
    f: Option<Function>,
    ctl: &'a Ctl,
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

// --- the work of a call, on any engine and thread ---

/// What a call does; its input is owned, so it can move to a pool worker.
enum Job {
    Compress(Vec<u8>),
    Decompress(Vec<u8>),
    DecompressChunks(Vec<u8>),
    Score(Vec<u8>),
    CompressRaw(Vec<u8>),
    DecompressRaw(Vec<u8>, u64),
}

impl Job {
    /// The KV cache slots the CPU engine takes for this call: one per model chunk of a file
    /// to decode, which then decode in lock-step (each step reads the weights once for all
    /// of them), at most `DECODE_SLOTS` as in the CLI; one otherwise (a header that does not
    /// parse gets one: the call reports the error).
    fn slots(&self) -> usize {
        match self {
            Job::Decompress(f) | Job::DecompressChunks(f) => container::info(f).map_or(1, |i| i.decode_slots()),
            _ => 1,
        }
    }
}

/// Sizes the CPU engine's KV cache for a call (the GPU engine keeps its one slot). Between
/// calls the engine holds one slot: a multi-chunk file's extra slots are given back after it.
fn set_slots(engine: &mut Engine, slots: usize) -> lmz::Result<()> {
    match engine {
        Engine::Cpu(b) => b.set_slots(slots),
        #[cfg(feature = "gpu")]
        Engine::Gpu(_) => Ok(()),
    }
}

/// What a call gives back (plain Rust data: JS values are made on the calling thread).
enum Out {
    Bytes(Vec<u8>),
    Done,
    Scores { lengths: Vec<u32>, bits: Vec<f64> },
}

/// Runs `job` on engine `b`; `sink` takes `DecompressChunks`' chunks in file order.
async fn run_job<B: Backend>(
    codec: &Codec,
    fracs: &Fracs,
    b: &mut B,
    job: Job,
    p: &mut dyn Progress,
    sink: &mut dyn FnMut(&[u8]) -> lmz::Result<()>,
) -> lmz::Result<Out> {
    Ok(match job {
        Job::Compress(data) => Out::Bytes(codec.compress_async(b, &data, &Options::default(), p).await?),
        Job::Decompress(file) => Out::Bytes(codec.decompress_async(b, &file, p).await?),
        Job::DecompressChunks(file) => {
            codec.decompress_chunks_async(b, &file, p, sink).await?;
            Out::Done
        }
        Job::CompressRaw(data) => Out::Bytes(codec.compress_raw_async(b, &data, container::ModelUse::Auto, p).await?),
        Job::DecompressRaw(raw, len) => Out::Bytes(codec.decompress_raw_async(b, &raw, len, p).await?),
        Job::Score(data) => {
            let tok = codec.tokenizer();
            let tokens = tok.encode(&data);
            let mut lengths = Vec::with_capacity(tokens.len());
            let mut i = 0;
            while i < tokens.len() {
                if Some(tokens[i]) == tok.escape_token()
                    && i + 1 < tokens.len()
                    && tok.decode(&tokens[i..i + 2]).len() == 1
                {
                    lengths.extend_from_slice(&[0, 1]);
                    i += 2;
                } else {
                    lengths.push(tok.token_bytes(tokens[i]).len() as u32);
                    i += 1;
                }
            }
            let policy: Policy = codec.default_policy();
            let total = (lmz::freq::FREQ_TOTAL as f64).log2();
            let mut bits = vec![0f64; tokens.len()];
            lmz::eval::score_async(
                b,
                codec.config(),
                fracs,
                &tokens,
                &policy,
                &mut |i, f| {
                    bits[i] = total - (f[tokens[i] as usize] as f64).log2();
                    Ok(())
                },
                &mut |d, t| p.update(d as u64, t as u64),
            )
            .await?;
            Out::Scores { lengths, bits }
        }
    })
}

// --- the compressor ---

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
    adapter: String,
}

/// Calls the optional JS progress callback; an exception from it is ignored (progress is a
/// report, not a control channel: use `cancel()`).
fn report(f: &Option<Function>, done: u64, total: u64) {
    if let Some(f) = f {
        let _ = f.call2(
            &JsValue::NULL,
            &JsValue::from_f64(done as f64),
            &JsValue::from_f64(total as f64),
        );
    }
}

/// How often (ms) the calling thread looks at a call running on the pool (threaded build).
#[cfg(feature = "threads")]
const POLL_MS: i32 = 4;

fn busy_error() -> JsValue {
    js_error(
        codes::BUSY,
        "this compressor is already running a call; wait for it (the package queues calls)",
    )
}

/// Hands the call's chunk to `onChunk`; remembers what it throws (the call then stops).
fn give_chunk(on_chunk: Option<&Function>, c: &[u8], thrown: &mut Option<JsValue>) -> lmz::Result<()> {
    if let (Some(f), None) = (on_chunk, &thrown) {
        if let Err(e) = f.call1(&JsValue::NULL, &Uint8Array::from(c)) {
            *thrown = Some(e);
            return Err(Error::Cancelled);
        }
    }
    Ok(())
}

impl Compressor {
    /// Runs `job` on the engine, in the calling thread, yielding to its event loop between
    /// forward steps.
    #[cfg(not(feature = "threads"))]
    #[allow(clippy::await_holding_refcell_ref)] // deliberate: see the struct's doc
    async fn call(&self, job: Job, progress: Option<Function>, on_chunk: Option<&Function>) -> Result<Out, JsValue> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| busy_error())?;
        self.ctl.cancelled.store(false, Ordering::Relaxed);
        let Inner { codec, fracs, engine } = &mut *guard;
        let ctl = &*self.ctl;
        let mut p = CallProgress { f: progress, ctl };
        let mut thrown = None;
        let mut sink = |c: &[u8]| -> lmz::Result<()> {
            give_chunk(on_chunk, c, &mut thrown)?;
            ctl.check()
        };
        let slots = job.slots();
        set_slots(engine, slots).map_err(to_js)?;
        let r =
            with_engine!(engine, b => run_job(codec, fracs, &mut Stepping::new(b, ctl), job, &mut p, &mut sink).await);
        // Between calls: one slot, whatever the call gave.
        set_slots(engine, 1).map_err(to_js)?;
        match (r, thrown) {
            (_, Some(e)) => Err(e),
            (r, None) => r.map_err(to_js),
        }
    }

    /// Runs `job` on a worker of the pool, where the engine's parallel loops split without
    /// crossing threads at every step; this thread's event loop stays free and forwards the
    /// job's progress and chunks to JS every few milliseconds.
    #[cfg(feature = "threads")]
    async fn call(&self, job: Job, progress: Option<Function>, on_chunk: Option<&Function>) -> Result<Out, JsValue> {
        if self.busy.replace(true) {
            return Err(busy_error());
        }
        let ctl = self.ctl.clone();
        ctl.cancelled.store(false, Ordering::Relaxed);
        ctl.finished.store(false, Ordering::Relaxed);
        *lock(&ctl.progress) = None;
        lock(&ctl.chunks).clear();
        let result: Arc<Mutex<Option<lmz::Result<Out>>>> = Arc::default();
        let (inner, c, out) = (self.inner.clone(), ctl.clone(), result.clone());
        rayon::spawn(move || {
            let mut guard = lock(&inner);
            let Inner { codec, fracs, engine } = &mut *guard;
            let slots = job.slots();
            let mut p = CallProgress { ctl: &c };
            let mut sink = |chunk: &[u8]| -> lmz::Result<()> {
                lock(&c.chunks).push(chunk.to_vec());
                c.check()
            };
            // The CPU engine's futures never wait: the library's block_on polls once.
            let r = set_slots(engine, slots).and_then(|()| {
                let Engine::Cpu(b) = &mut *engine;
                lmz::model::block_on(run_job(codec, fracs, &mut Stepping::new(b, &c), job, &mut p, &mut sink))
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
            // Read before the chunks: every chunk of a finished call is in the list by then.
            let finished = ctl.finished.load(Ordering::Acquire);
            let chunks = std::mem::take(&mut *lock(&ctl.chunks));
            for chunk in &chunks {
                if give_chunk(on_chunk, chunk, &mut thrown).is_err() {
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
fn bytes(out: Out) -> Vec<u8> {
    match out {
        Out::Bytes(b) => b,
        Out::Done | Out::Scores { .. } => Vec::new(),
    }
}

#[wasm_bindgen]
impl Compressor {
    /// Parses the model pack (its SHA-256 is computed again here and becomes the files'
    /// fingerprint) and opens the engine. `pack` is moved into wasm memory and freed once the
    /// engine holds its own copy of the weights.
    pub async fn create(pack: Vec<u8>, engine: String) -> Result<Compressor, JsValue> {
        let model = Model::from_pack_bytes(&pack).map_err(to_js)?;
        drop(pack);
        let codec = Codec::new(&model).map_err(to_js)?;
        let fracs = Fracs::new(&model.weights);
        let cache_len = codec.default_policy().window;
        let (engine_impl, name) = open(&engine, &model, cache_len).await?;
        let adapter = match &engine_impl {
            // The kernels this build runs (RelaxedSimd: the relaxed-SIMD builds; Simd128) and
            // its threads (the threaded build: the pool of `initThreadPool`, started before).
            Engine::Cpu(_) => {
                let n = lmz::backend::cpu::threads();
                format!(
                    "wasm32 CPU ({:?}), {n} thread{}",
                    lmz::backend::cpu::Isa::best(),
                    if n == 1 { "" } else { "s" }
                )
            }
            #[cfg(feature = "gpu")]
            Engine::Gpu(g) => g.describe(),
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
    /// loaded; N: 1, or the threaded build's pool).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
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
        self.call(Job::Compress(data), progress, None).await.map(bytes)
    }

    /// Decompresses a `.lmz` file (made here or by the CLI). `progress(done, total)` counts
    /// output bytes.
    pub async fn decompress(&self, file: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        self.call(Job::Decompress(file), progress, None).await.map(bytes)
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
        self.call(Job::DecompressChunks(file), progress, Some(&on_chunk))
            .await
            .map(|_| ())
    }

    /// The bits the model spends on each token of `data`, for a heat map: an object
    /// `{ lengths: Uint32Array, bits: Float64Array }` where token `i` spells the next
    /// `lengths[i]` bytes of `data` (0 for the escape token of an escape pair; its partner
    /// spells the byte) and costs `bits[i] = log2(2^24 / freq)` under the default policy —
    /// the same tables a one-chunk `.lmz` is coded with. `progress(done, total)` counts tokens.
    pub async fn score(&self, data: Vec<u8>, progress: Option<Function>) -> Result<JsValue, JsValue> {
        let (lengths, bits) = match self.call(Job::Score(data), progress, None).await? {
            Out::Scores { lengths, bits } => (lengths, bits),
            Out::Bytes(_) | Out::Done => (Vec::new(), Vec::new()),
        };
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"lengths".into(), &Uint32Array::from(&lengths[..]));
        let _ = js_sys::Reflect::set(&out, &"bits".into(), &Float64Array::from(&bits[..]));
        Ok(out.into())
    }
}

// --- raw streams (for embedders that store the length themselves: the notes extension) ---

/// Raw streams (docs/FORMAT.md, "Raw stream"): `tag, check16, payload`, 3 bytes over the
/// coder's output, for an embedder that already knows the model and keeps the original
/// length beside the stream. Kept in their own `impl` block.
#[wasm_bindgen]
impl Compressor {
    /// Compresses `data` into a raw stream (one chunk, the default policy, the smallest
    /// method). `progress(done, total)` counts input bytes.
    #[wasm_bindgen(js_name = compressRaw)]
    pub async fn compress_raw(&self, data: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        self.call(Job::CompressRaw(data), progress, None).await.map(bytes)
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
        self.call(Job::DecompressRaw(raw, len), progress, None).await.map(bytes)
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

fn raw_length(length: f64) -> Result<u64, JsValue> {
    // NaN is in no range: refused too.
    if !((0.0..=9_007_199_254_740_991.0).contains(&length) && length.fract() == 0.0) {
        return Err(js_error(
            codes::INVALID_ARGUMENT,
            &format!("length {length}: the original length must be a non-negative integer below 2^53"),
        ));
    }
    Ok(length as u64)
}
