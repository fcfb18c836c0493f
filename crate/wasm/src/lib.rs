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
//! Errors cross as JS `Error`s whose `name` and `code` are the library's stable
//! `Error::code()` (`LMZ_FORMAT_CHECKSUM`, …), never a panic string; the bindings' own
//! errors use codes of the same shape (listed in [`codes`]).
//!
//! On other targets this crate is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};

use js_sys::{Float64Array, Function, Uint32Array, Uint8Array};
use lmz::backend::cpu::CpuBackend;
use lmz::backend::gpu::{DeviceType, Gpu, GpuBackend, GpuOptions};
use lmz::backend::{Backend, Mat, Norm};
use lmz::container::{self, Codec, Form, Method, Options, Progress};
use lmz::eval::Policy;
use lmz::model::Fracs;
use lmz::{Error, Model};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Codes of errors that the bindings raise themselves (the library's are `Error::code()`).
pub mod codes {
    /// A second call on a `Compressor` while one is running (the package queues calls).
    pub const BUSY: &str = "LMZ_BUSY";
    /// `engine` is not one of "auto", "webgpu", "cpu".
    pub const INVALID_ARGUMENT: &str = "LMZ_INVALID_ARGUMENT";
}

/// Sequence slots of the engine (one chunk decoded at a time: texts in a page are small) and
/// positions per slot (the default policy's window).
const SLOTS: usize = 1;

#[wasm_bindgen(start)]
fn start() {
    // A panic is a bug; this turns its message into a console error instead of
    // "unreachable executed". Errors callers can act on never panic (they are `Result`s).
    console_error_panic_hook::set_once();
}

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
    Gpu(Box<GpuBackend>),
}

/// Runs `$body` with `$b` bound to the engine inside (`&mut` of its concrete type).
macro_rules! with_engine {
    ($e:expr, $b:ident => $body:expr) => {
        match $e {
            Engine::Cpu($b) => $body,
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
fn gpu_to_js(e: Error) -> JsValue {
    let fix = "use engine: 'cpu', or 'auto', which runs on the CPU when WebGPU cannot";
    match &e {
        Error::GpuLimits { adapter, what } => {
            let name = if adapter.is_empty() { String::new() } else { format!(" ({adapter})") };
            js_error(e.code(), &format!("the WebGPU adapter{name} is too small for this model: {what}; {fix}"))
        }
        Error::GpuNoAdapter(why) => js_error(e.code(), &format!("this browser offers no WebGPU adapter ({why}); {fix}")),
        _ => to_js(e),
    }
}

/// Opens the engine `kind` names. `auto`: a hardware WebGPU adapter, else the CPU.
async fn open(kind: &str, model: &Model, cache_len: usize) -> Result<(Engine, String), JsValue> {
    let cpu = |m: &Model| CpuBackend::with_slots(m, SLOTS, cache_len).map(|b| (Engine::Cpu(b), "cpu".to_string())).map_err(to_js);
    match kind {
        "cpu" => cpu(model),
        "webgpu" => {
            let g = Gpu::new_async(GpuOptions::default()).await.map_err(gpu_to_js)?;
            let b = GpuBackend::on(g, model, SLOTS, cache_len).map_err(gpu_to_js)?;
            Ok((Engine::Gpu(Box::new(b)), "webgpu".to_string()))
        }
        "auto" => match Gpu::new_async(GpuOptions::default()).await {
            Ok(g) if g.adapter_info().device_type != DeviceType::Cpu => match GpuBackend::on(g, model, SLOTS, cache_len) {
                Ok(b) => Ok((Engine::Gpu(Box::new(b)), "webgpu".to_string())),
                Err(Error::GpuLimits { .. }) | Err(Error::Gpu(_)) => cpu(model),
                Err(e) => Err(to_js(e)),
            },
            Ok(_) | Err(Error::GpuNoAdapter(_)) | Err(Error::GpuLimits { .. }) | Err(Error::Gpu(_)) => cpu(model),
            Err(e) => Err(to_js(e)),
        },
        other => Err(js_error(codes::INVALID_ARGUMENT, &format!("engine {other:?}: use \"auto\", \"webgpu\" or \"cpu\""))),
    }
}

// --- yielding to the event loop ---

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout` (a window's or a worker's).
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> JsValue;
}

/// Resolves on a later task of the event loop, so that messages (a cancel) and rendering get
/// their turn.
async fn next_task() {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, 0);
    });
    // A promise resolved by a timer never rejects.
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// How long the engine may keep the thread before it lets the event loop run.
const YIELD_EVERY_MS: f64 = 50.0;

/// An engine that lets the event loop run between forward passes, and stops with
/// `Error::Cancelled` after one when `cancel()` was called. The wasm-CPU engine never waits by
/// itself, so without this a worker would not see a cancel message (or a page repaint) until
/// the whole call was done; and the library checks for cancellation only where it reports
/// progress (every 256 decoded bytes), this after every step. Every operation is the inner
/// engine's: the bits are the same.
struct Yielding<'a, B> {
    b: &'a mut B,
    last: f64,
    cancelled: &'a Cell<bool>,
}

impl<'a, B: Backend> Yielding<'a, B> {
    fn new(b: &'a mut B, cancelled: &'a Cell<bool>) -> Self {
        Yielding { b, last: js_sys::Date::now(), cancelled }
    }
}

impl<B: Backend> Backend for Yielding<'_, B> {
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
    async fn freqs(&mut self, logits: &B::Buf, sink: &mut dyn FnMut(usize, &[u32]) -> lmz::Result<()>) -> lmz::Result<()> {
        self.b.freqs(logits, sink).await?;
        if js_sys::Date::now() - self.last >= YIELD_EVERY_MS {
            next_task().await;
            self.last = js_sys::Date::now();
        }
        if self.cancelled.get() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// Progress to JS, and the cancel flag back: the library stops at its next report with
/// `Error::Cancelled` (`LMZ_CANCELLED`).
struct JsProgress<'a> {
    f: Option<Function>,
    cancelled: &'a Cell<bool>,
}

impl Progress for JsProgress<'_> {
    fn update(&mut self, done: u64, total: u64) -> lmz::Result<()> {
        report(&self.f, done, total);
        if self.cancelled.get() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

// --- the compressor ---

struct Inner {
    codec: Codec,
    fracs: Fracs,
    engine: Engine,
}

/// A model and an engine, ready to compress and decompress.
///
/// A call holds the `RefCell` borrow across its awaits on purpose: that is what makes a
/// second call during the first an `LMZ_BUSY` error (`try_borrow_mut`) rather than two calls
/// interleaving on one KV cache; `cancel()` only touches the separate flag.
#[wasm_bindgen]
pub struct Compressor {
    inner: RefCell<Inner>,
    cancelled: Cell<bool>,
    engine: String,
    adapter: String,
}

/// Calls the optional JS progress callback; an exception from it is ignored (progress is a
/// report, not a control channel: use `cancel()`).
fn report(f: &Option<Function>, done: u64, total: u64) {
    if let Some(f) = f {
        let _ = f.call2(&JsValue::NULL, &JsValue::from_f64(done as f64), &JsValue::from_f64(total as f64));
    }
}

#[wasm_bindgen]
#[allow(clippy::await_holding_refcell_ref)] // deliberate: see the struct's doc
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
            // The kernels this build runs: RelaxedSimd (the relaxed-SIMD build) or Simd128.
            Engine::Cpu(_) => format!("wasm32 CPU ({:?}), 1 thread", lmz::backend::cpu::Isa::best()),
            Engine::Gpu(g) => g.describe(),
        };
        Ok(Compressor { inner: RefCell::new(Inner { codec, fracs, engine: engine_impl }), cancelled: Cell::new(false), engine: name, adapter })
    }

    /// `"webgpu"` or `"cpu"`: the engine that actually runs.
    #[wasm_bindgen(getter)]
    pub fn engine(&self) -> String {
        self.engine.clone()
    }

    /// The adapter (WebGPU: its description, backend and dot4 variant) or "wasm32 CPU
    /// (KERNELS), 1 thread" (KERNELS: `RelaxedSimd` or `Simd128`, the build the page loaded).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// The model fingerprint (hex) this compressor writes into files.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        self.inner.try_borrow().map(|i| lmz::pack::hex(i.codec.fingerprint())).unwrap_or_default()
    }

    /// Asks the running call to stop at its next progress step; it then rejects with
    /// `LMZ_CANCELLED`.
    pub fn cancel(&self) {
        self.cancelled.set(true);
    }

    fn begin(&self) -> Result<std::cell::RefMut<'_, Inner>, JsValue> {
        let inner = self.inner.try_borrow_mut().map_err(|_| js_error(codes::BUSY, "this compressor is already running a call; wait for it (the package queues calls)"))?;
        self.cancelled.set(false);
        Ok(inner)
    }

    /// Compresses `data` into a `.lmz` file. `progress(done, total)` counts input bytes.
    pub async fn compress(&self, data: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        let mut guard = self.begin()?;
        let inner = &mut *guard;
        let opts = Options::default();
        let mut p = JsProgress { f: progress, cancelled: &self.cancelled };
        with_engine!(&mut inner.engine, b => inner.codec.compress_async(&mut Yielding::new(b, &self.cancelled), &data, &opts, &mut p).await).map_err(to_js)
    }

    /// Decompresses a `.lmz` file (made here or by the CLI). `progress(done, total)` counts
    /// output bytes.
    pub async fn decompress(&self, file: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        let mut guard = self.begin()?;
        let inner = &mut *guard;
        let mut p = JsProgress { f: progress, cancelled: &self.cancelled };
        with_engine!(&mut inner.engine, b => inner.codec.decompress_async(&mut Yielding::new(b, &self.cancelled), &file, &mut p).await).map_err(to_js)
    }

    /// Decompresses a `.lmz` file chunk by chunk (the package's `decompressStream`):
    /// `onChunk(bytes)` gets each chunk's original as a fresh `Uint8Array`, in file order, as
    /// soon as that chunk is decoded; the promise resolves after the last one once the
    /// checksum of the whole original has been verified (`Codec::decompress_chunks_async`
    /// says what is checked when: a checksum mismatch rejects after every chunk was handed
    /// out). An exception thrown by `onChunk` stops the work and rejects with it.
    /// `progress(done, total)` counts output bytes.
    #[wasm_bindgen(js_name = decompressChunks)]
    pub async fn decompress_chunks(&self, file: Vec<u8>, progress: Option<Function>, on_chunk: Function) -> Result<(), JsValue> {
        let mut guard = self.begin()?;
        let inner = &mut *guard;
        let mut p = JsProgress { f: progress, cancelled: &self.cancelled };
        let mut thrown: Option<JsValue> = None;
        let mut sink = |c: &[u8]| -> lmz::Result<()> {
            if let Err(e) = on_chunk.call1(&JsValue::NULL, &Uint8Array::from(c)) {
                thrown = Some(e);
                return Err(Error::Cancelled);
            }
            if self.cancelled.get() {
                return Err(Error::Cancelled);
            }
            Ok(())
        };
        let r = with_engine!(&mut inner.engine, b => inner.codec.decompress_chunks_async(&mut Yielding::new(b, &self.cancelled), &file, &mut p, &mut sink).await);
        match (r, thrown) {
            (_, Some(e)) => Err(e),
            (r, None) => r.map_err(to_js),
        }
    }

    /// The bits the model spends on each token of `data`, for a heat map: an object
    /// `{ lengths: Uint32Array, bits: Float64Array }` where token `i` spells the next
    /// `lengths[i]` bytes of `data` (0 for the escape token of an escape pair; its partner
    /// spells the byte) and costs `bits[i] = log2(2^24 / freq)` under the default policy —
    /// the same tables a one-chunk `.lmz` is coded with. `progress(done, total)` counts tokens.
    pub async fn score(&self, data: Vec<u8>, progress: Option<Function>) -> Result<JsValue, JsValue> {
        let mut guard = self.begin()?;
        let inner = &mut *guard;
        let tok = inner.codec.tokenizer();
        let tokens = tok.encode(&data);
        let mut lengths = Vec::with_capacity(tokens.len());
        let mut i = 0;
        while i < tokens.len() {
            if Some(tokens[i]) == tok.escape_token() && i + 1 < tokens.len() && tok.decode(&tokens[i..i + 2]).len() == 1 {
                lengths.extend_from_slice(&[0, 1]);
                i += 2;
            } else {
                lengths.push(tok.token_bytes(tokens[i]).len() as u32);
                i += 1;
            }
        }
        let policy: Policy = inner.codec.default_policy();
        let total = (lmz::freq::FREQ_TOTAL as f64).log2();
        let mut bits = vec![0f64; tokens.len()];
        let cfg = inner.codec.config().clone();
        let fr = &inner.fracs;
        let mut p = JsProgress { f: progress, cancelled: &self.cancelled };
        with_engine!(&mut inner.engine, b => lmz::eval::score_async(
            &mut Yielding::new(b, &self.cancelled),
            &cfg,
            fr,
            &tokens,
            &policy,
            &mut |i, f| {
                bits[i] = total - (f[tokens[i] as usize] as f64).log2();
                Ok(())
            },
            &mut |d, t| p.update(d as u64, t as u64),
        )
        .await)
        .map_err(to_js)?;
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
#[allow(clippy::await_holding_refcell_ref)] // deliberate: see the struct's doc
impl Compressor {
    /// Compresses `data` into a raw stream (one chunk, the default policy, the smallest
    /// method). `progress(done, total)` counts input bytes.
    #[wasm_bindgen(js_name = compressRaw)]
    pub async fn compress_raw(&self, data: Vec<u8>, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        let mut guard = self.begin()?;
        let inner = &mut *guard;
        let mut p = JsProgress { f: progress, cancelled: &self.cancelled };
        with_engine!(&mut inner.engine, b => inner.codec.compress_raw_async(&mut Yielding::new(b, &self.cancelled), &data, container::ModelUse::Auto, &mut p).await).map_err(to_js)
    }

    /// Decodes a raw stream made by `compressRaw` from `length` bytes. `length` must be the
    /// exact original length (a JS number: a non-negative integer below 2^53).
    /// `progress(done, total)` counts output bytes.
    #[wasm_bindgen(js_name = decompressRaw)]
    pub async fn decompress_raw(&self, raw: Vec<u8>, length: f64, progress: Option<Function>) -> Result<Vec<u8>, JsValue> {
        let len = raw_length(length)?;
        let mut guard = self.begin()?;
        let inner = &mut *guard;
        let mut p = JsProgress { f: progress, cancelled: &self.cancelled };
        with_engine!(&mut inner.engine, b => inner.codec.decompress_raw_async(&mut Yielding::new(b, &self.cancelled), &raw, len, &mut p).await).map_err(to_js)
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
        return Err(js_error(codes::INVALID_ARGUMENT, &format!("length {length}: the original length must be a non-negative integer below 2^53")));
    }
    Ok(length as u64)
}
