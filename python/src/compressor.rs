//! `lmz.Compressor`: a model pack, its codec and an engine, loaded once; compress,
//! decompress, info, eval, and the batch calls.
//!
//! Each call runs like the CLI's (`crate/cli/src/files.rs`): the same `Options`, the same
//! engine sizing (a cache of the file's window, one sequence slot per model chunk to decode
//! in lock-step), on the compressor's own rayon pool — so its bytes are `lmz -c`'s bytes.
//!
//! Threads: the GIL is released for the whole call. The engine is behind a mutex, so calls
//! on one compressor from several Python threads run one after the other (each their own
//! compressor runs them side by side). The work runs on a scoped thread inside the pool while
//! the calling thread waits; every [`POLL`] it takes the GIL to run Python's signal handlers
//! (Ctrl-C stops the call with `KeyboardInterrupt`) and the `progress` callback, whose
//! exception stops the call too. A panic (a bug) becomes `LMZ_INTERNAL`, and the compressor
//! refuses further calls: its engine's state is unknown.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use lmz::backend::engine::{BackendKind, Engine};
use lmz::backend::Backend;
use lmz::container::{self, Codec, ItemSink, Options, Progress, DECODE_SLOTS};
use lmz::model::{block_on, Fracs};
use lmz::{with_engine, Error, Result};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::type_object::PyTypeInfo;
use pyo3::types::{PyBytes, PyDict, PyList, PyMemoryView};

use crate::errors::{to_py, to_py_object};

/// How often the calling thread looks at a running call (signals, progress).
const POLL: Duration = Duration::from_millis(50);

// --- the model and its engine ---

/// What a call works on. The model's weights live only in the engine (which lays them out
/// its own way): the pack is read again when a file needs a bigger engine, as in the CLI.
struct State {
    pack: PathBuf,
    kind: BackendKind,
    codec: Codec,
    fracs: Fracs,
    /// `None` only between dropping an engine and opening its replacement.
    engine: Option<Engine>,
    /// A call panicked: the engine's state is unknown.
    broken: bool,
}

impl State {
    /// Loads the pack and opens the engine for compression (one slot, the default window).
    fn load(pack: PathBuf, kind: BackendKind) -> Result<State> {
        let model = lmz::fetch::load(&pack)?;
        let codec = Codec::new(&model)?;
        let fracs = Fracs::new(&model.weights);
        let engine = Engine::open(kind, &model, 1, codec.default_policy().window)?;
        drop(model);
        release_freed_memory();
        Ok(State {
            pack,
            kind,
            codec,
            fracs,
            engine: Some(engine),
            broken: false,
        })
    }

    /// The codec and an engine with a cache of at least `window` positions in at least
    /// `slots` sequences (the CLI's `Engine::backend`; the CPU engine changes its slots in
    /// place).
    fn engine(&mut self, window: usize, slots: usize) -> Result<(&Codec, &Fracs, &mut Engine)> {
        let window = window.clamp(1, self.codec.config().ctx);
        match &mut self.engine {
            Some(e) if e.cache_len() >= window && e.slots() >= slots => {}
            Some(Engine::Cpu(b)) if b.cache_len() >= window => b.set_slots(slots)?,
            _ => {
                self.engine = None; // free the old cache first
                let model = lmz::fetch::load(&self.pack)?;
                if model.fingerprint != *self.codec.fingerprint() {
                    return Err(Error::InvalidArgument(format!(
                        "the model pack {} changed since this compressor loaded it",
                        self.pack.display()
                    )));
                }
                self.engine = Some(Engine::open(self.kind, &model, slots, window)?);
                drop(model);
                release_freed_memory();
            }
        }
        let engine = self
            .engine
            .as_mut()
            .ok_or_else(|| Error::Internal("no engine after opening one".into()))?;
        Ok((&self.codec, &self.fracs, engine))
    }

    /// Between calls the CPU engine holds one slot, whatever a call needed (the browser
    /// bindings' rule: a 4-chunk file's extra KV caches, ~47 MB each, are given back).
    fn one_slot(&mut self) -> Result<()> {
        match &mut self.engine {
            Some(Engine::Cpu(b)) if b.slots() > 1 => b.set_slots(1),
            _ => Ok(()),
        }
    }

    fn compress(&mut self, data: &[u8], p: &mut dyn Progress) -> Result<Vec<u8>> {
        let window = self.codec.default_policy().window;
        let (codec, _, engine) = self.engine(window, 1)?;
        // `Options::default()` is what `lmz` without flags uses: the default chunk size and
        // policy, the model where it helps, the compact form for small inputs.
        with_engine!(engine, b => codec.compress(b, data, &Options::default(), p))
    }

    fn decompress(&mut self, file: &[u8], p: &mut dyn Progress) -> Result<Vec<u8>> {
        let info = container::info(file)?;
        let window = info
            .window_stride
            .map_or(self.codec.default_policy().window, |(w, _)| w as usize);
        // Model chunks decode in lock-step, one sequence slot each, as in the CLI.
        let (codec, _, engine) = self.engine(window, info.decode_slots())?;
        let out = with_engine!(engine, b => codec.decompress(b, file, p));
        self.one_slot()?;
        out
    }

    /// `lmz eval`'s numbers under the default policy: the ideal code length of the tables the
    /// coder uses for `data` as one sequence.
    fn eval(&mut self, data: &[u8], p: &mut dyn Progress) -> Result<Eval> {
        let policy = self.codec.default_policy();
        let (codec, fracs, engine) = self.engine(policy.window, 1)?;
        let tokens = codec.tokenizer().encode(data);
        let mut bits = 0f64;
        with_engine!(engine, b => lmz::model::block_on(lmz::eval::score_async(
            b,
            codec.config(),
            fracs,
            &tokens,
            &policy,
            &mut |i, f| {
                bits += lmz::freq::bits(f, tokens[i]);
                Ok(())
            },
            &mut |d, t| p.update(d as u64, t as u64),
        )))?;
        Ok(Eval {
            bytes: data.len(),
            tokens: tokens.len(),
            bits,
            policy: policy.describe(),
        })
    }

    /// `Codec::compress_many` or `Codec::decompress_many` on `items` in one call (the
    /// library's lock-step batches: one forward pass for many short streams), each item's
    /// result handed to `sink` as soon as it is known. The engine is sized as the browser
    /// bindings size it (`crate/wasm/src/job.rs`): a cache of the largest window any item
    /// was made with, in as many windows as the items could fill, at most
    /// [`DECODE_SLOTS`]; the CPU engine gives them back after the call.
    fn many(&mut self, what: Batch, items: &[&[u8]], p: &mut dyn Progress, sink: &mut ItemSink<'_>) -> Result<()> {
        let default = self.codec.default_policy().window;
        let infos: Vec<_> = match what {
            Batch::Compress => Vec::new(),
            Batch::Decompress => items.iter().map(|f| container::info(f).ok()).collect(),
        };
        let window = infos
            .iter()
            .flatten()
            .filter_map(|i| i.window_stride)
            .map(|(w, _)| w as usize)
            .fold(default, usize::max);
        // An item of `n` bytes needs at most `n + 1` positions (a token spells at least one
        // byte; plus the start token), and never more than one window.
        let lens: Vec<u64> = match what {
            Batch::Compress => items.iter().map(|d| d.len() as u64).collect(),
            Batch::Decompress => infos.iter().map(|i| i.as_ref().map_or(0, |i| i.original_len)).collect(),
        };
        let positions = lens
            .iter()
            .fold(0u64, |t, &n| t.saturating_add(n.saturating_add(1).min(window as u64)));
        let fill = positions.div_ceil(window.max(1) as u64).min(DECODE_SLOTS as u64) as usize;
        // A file of several model chunks decodes them in lock-step, as `decompress` would.
        let chunks = infos.iter().flatten().map(|i| i.decode_slots()).max().unwrap_or(1);
        let slots = fill.max(chunks).clamp(1, DECODE_SLOTS);
        let (codec, _, engine) = self.engine(window, slots)?;
        let out = with_engine!(engine, b => match what {
            // `Options::default()`: what `compress` uses, so each item's bytes are its bytes.
            Batch::Compress => block_on(codec.compress_many_async(b, items, &Options::default(), p, sink)),
            Batch::Decompress => block_on(codec.decompress_many_async(b, items, p, sink)),
        });
        self.one_slot()?;
        out
    }
}

struct Eval {
    bytes: usize,
    tokens: usize,
    bits: f64,
    policy: String,
}

/// Returns freed heap memory to the system: the model pack (~99 MB) is freed once the engine
/// has its own copy of the weights, but glibc keeps freed pages resident (the CLI's
/// `release_freed_memory`). Elsewhere a no-op.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

// --- a call: on the pool, the calling thread watching ---

/// Where a running call reports and learns that it must stop.
#[derive(Default)]
struct Ctl {
    done: AtomicU64,
    total: AtomicU64,
    stop: AtomicBool,
}

/// Progress that the calling thread forwards to Python's `progress(done, total)`.
struct Report<'a>(&'a Ctl);

impl Progress for Report<'_> {
    fn update(&mut self, done: u64, total: u64) -> Result<()> {
        self.0.done.store(done, Ordering::Relaxed);
        self.0.total.store(total, Ordering::Relaxed);
        stop_check(self.0)
    }
}

/// Progress that only stops (an item of a batch, whose progress counts items).
struct StopOnly<'a>(&'a Ctl);

impl Progress for StopOnly<'_> {
    fn update(&mut self, _: u64, _: u64) -> Result<()> {
        stop_check(self.0)
    }
}

fn stop_check(c: &Ctl) -> Result<()> {
    if c.stop.load(Ordering::Relaxed) {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// Input bytes: `bytes`, `bytearray` (copied) or a `memoryview` (copied).
pub(crate) fn input(obj: &Bound<'_, PyAny>) -> PyResult<PyBackedBytes> {
    if let Ok(b) = obj.extract::<PyBackedBytes>() {
        return Ok(b);
    }
    if obj.is_instance_of::<PyMemoryView>() {
        return Ok(PyBytes::type_object(obj.py())
            .call1((obj,))?
            .extract::<PyBackedBytes>()?);
    }
    Err(PyTypeError::new_err(format!(
        "expected bytes, bytearray or memoryview, got {}",
        obj.get_type().name()?
    )))
}

/// What a batch call does to its items.
#[derive(Clone, Copy)]
enum Batch {
    Compress,
    Decompress,
}

/// How a batch call treats an item that fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// Stop at the first failing item and raise its error (with `.item` = its index).
    Raise,
    /// Process every item; a failing one's place in the list holds its exception object.
    Return,
}

impl OnError {
    fn parse(s: &str) -> Result<OnError> {
        match s {
            "raise" => Ok(OnError::Raise),
            "return" => Ok(OnError::Return),
            other => Err(Error::InvalidArgument(format!(
                "errors={other:?}: use \"raise\" or \"return\""
            ))),
        }
    }
}

/// A model and an engine, ready to compress and decompress (module docs: threads).
#[pyclass(frozen, module = "lmz")]
pub struct Compressor {
    state: Mutex<State>,
    pool: rayon::ThreadPool,
    backend: &'static str,
    engine: String,
    model_path: String,
    fingerprint: String,
}

impl Compressor {
    /// Runs `work` on the pool with the GIL released (module docs), and maps its error.
    fn run<R: Send>(
        &self,
        py: Python<'_>,
        progress: Option<&Bound<'_, PyAny>>,
        work: impl FnOnce(&mut State, &Ctl) -> Result<R> + Send,
    ) -> PyResult<R> {
        let ctl = Ctl::default();
        let callback: Option<Py<PyAny>> = progress.filter(|p| !p.is_none()).map(|p| p.clone().unbind());
        let (result, raised) = py.detach(|| {
            // A panic poisons nothing here (it is caught below); a poisoned lock can only come
            // from one outside `work`, and `broken` covers the engine either way.
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if guard.broken {
                return (
                    Err(Error::Internal(
                        "an earlier call on this compressor panicked (a bug: its message went to stderr); \
                         create a new Compressor"
                            .into(),
                    )),
                    None,
                );
            }
            let st = &mut *guard;
            let (result, raised, panicked) = std::thread::scope(|s| {
                let (tx, rx) = mpsc::channel();
                let ctl = &ctl;
                s.spawn(move || {
                    let r = catch_unwind(AssertUnwindSafe(|| self.pool.install(|| work(st, ctl))));
                    let _ = tx.send(r);
                });
                let mut raised: Option<PyErr> = None;
                // The callback hears only what the library reported (nothing before its first report).
                let mut last = Some((0, 0));
                loop {
                    let got = rx.recv_timeout(POLL);
                    if raised.is_none() {
                        let now = (ctl.done.load(Ordering::Relaxed), ctl.total.load(Ordering::Relaxed));
                        let tick = Python::attach(|py| -> PyResult<()> {
                            py.check_signals()?;
                            if let (Some(cb), true) = (&callback, last != Some(now)) {
                                last = Some(now);
                                cb.call1(py, now)?;
                            }
                            Ok(())
                        });
                        if let Err(e) = tick {
                            ctl.stop.store(true, Ordering::Relaxed);
                            raised = Some(e);
                        }
                    }
                    match got {
                        Ok(Ok(r)) => break (r, raised, false),
                        Ok(Err(panic)) => break (Err(Error::Internal(panic_message(&panic))), raised, true),
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        // The worker sends before it ends, even after a panic (caught).
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            break (
                                Err(Error::Internal("the call's thread ended without a result".into())),
                                raised,
                                true,
                            )
                        }
                    }
                }
            });
            if panicked {
                guard.broken = true;
            }
            (result, raised)
        });
        // Ctrl-C, or the progress callback's exception, wins over what the stopped call said.
        if let Some(e) = raised {
            return Err(e);
        }
        result.map_err(|e| to_py(py, &e))
    }

    /// A batch: the items in one library call ([`State::many`]), each item's error kept or
    /// raised per `errors`; `progress(done, total)` counts items. Ctrl-C stops the batch.
    fn many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        errors: &str,
        progress: Option<&Bound<'py, PyAny>>,
        what: Batch,
    ) -> PyResult<Bound<'py, PyList>> {
        let on_error = OnError::parse(errors).map_err(|e| to_py(py, &e))?;
        let inputs = items.try_iter()?.map(|o| input(&o?)).collect::<PyResult<Vec<_>>>()?;
        let got = self.run(py, progress, |st, ctl| {
            let refs: Vec<&[u8]> = inputs.iter().map(|d| &d[..]).collect();
            let mut got = Gathered::new(refs.len(), on_error);
            Report(ctl).update(0, got.total())?;
            let r = st.many(what, &refs, &mut StopOnly(ctl), &mut |i, r| {
                got.put(i, r)?;
                Report(ctl).update(got.done, got.total())
            });
            match r {
                Ok(()) => {}
                // Not a cancellation: the first failing item is known (`Gathered::put`).
                Err(Error::Cancelled) if got.settled() => {}
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                // The call failed as a whole (the engine could not be sized, or failed under
                // the batch): each item without a result gets the error, as its own call
                // would have. `errors="return"` (lmz.ray's) still never raises for it.
                Err(e) => got.rest = Some(e),
            }
            Ok(got)
        })?;
        let missing = Error::Internal("an item got no result".into());
        let list = PyList::empty(py);
        for (i, r) in got.results.iter().enumerate() {
            let r = match r {
                Some(r) => r.as_ref(),
                None => Err(got.rest.as_ref().unwrap_or(&missing)),
            };
            match r {
                Ok(bytes) => list.append(PyBytes::new(py, bytes))?,
                Err(e) if on_error == OnError::Return => list.append(to_py_object(py, e)?)?,
                Err(e) => {
                    let err = to_py(py, e);
                    err.value(py).setattr("item", i)?;
                    return Err(err);
                }
            }
        }
        Ok(list)
    }
}

/// A batch's results as the library hands them over (in the order they finish).
struct Gathered {
    results: Vec<Option<Result<Vec<u8>>>>,
    done: u64,
    on_error: OnError,
    /// The lowest index of a failed item so far.
    first_failed: Option<usize>,
    /// Items `0..known` all have their results.
    known: usize,
    /// The error of a call that failed as a whole: every item without a result has it.
    rest: Option<Error>,
}

impl Gathered {
    fn new(n: usize, on_error: OnError) -> Gathered {
        Gathered {
            results: (0..n).map(|_| None).collect(),
            done: 0,
            on_error,
            first_failed: None,
            known: 0,
            rest: None,
        }
    }

    fn total(&self) -> u64 {
        self.results.len() as u64
    }

    /// Keeps item `i`'s result. With `errors="raise"`, stops the call (with
    /// `Error::Cancelled`, which [`Gathered::settled`] tells from a real one) once the item
    /// to raise is known: a failed item with every item before it done. The items decoded
    /// with it in lock-step may be done too; their results are dropped, as the one-by-one
    /// loop never ran them.
    fn put(&mut self, i: usize, r: Result<Vec<u8>>) -> Result<()> {
        let n = self.results.len();
        let slot = self
            .results
            .get_mut(i)
            .ok_or_else(|| Error::Internal(format!("a result for item {i} of {n}")))?;
        if r.is_err() {
            self.first_failed = Some(self.first_failed.map_or(i, |f| f.min(i)));
        }
        *slot = Some(r);
        self.done += 1;
        while self.results.get(self.known).is_some_and(Option::is_some) {
            self.known += 1;
        }
        if self.settled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Whether `errors="raise"` has its item: nothing after it changes the outcome.
    fn settled(&self) -> bool {
        self.on_error == OnError::Raise && self.first_failed.is_some_and(|f| f < self.known)
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    format!("the engine panicked: {what}; this compressor cannot be used any more")
}

#[pymethods]
impl Compressor {
    /// Loads the model pack (default: $LMZ_MODEL, else the cache `lmz.fetch_model()` fills)
    /// and opens the engine. `threads`: the CPU engine's threads (default: one per core).
    #[new]
    #[pyo3(signature = (model=None, backend="cpu", threads=None))]
    fn new(py: Python<'_>, model: Option<PathBuf>, backend: &str, threads: Option<usize>) -> PyResult<Compressor> {
        let kind = backend.parse::<BackendKind>().map_err(|e| to_py(py, &e))?;
        if threads == Some(0) {
            return Err(to_py(py, &Error::InvalidArgument("threads must be at least 1".into())));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .thread_name(|i| format!("lmz-{i}"))
            .build()
            .map_err(|e| to_py(py, &Error::InvalidArgument(format!("cannot start the threads: {e}"))))?;
        let pack = lmz::fetch::default_pack_path(model.as_deref());
        let loaded = py.detach(|| {
            pool.install(|| {
                let st = State::load(pack.clone(), kind)?;
                let engine = st.engine.as_ref().map(|e| (e.name(), e.describe()));
                Ok::<_, Error>((st, engine))
            })
        });
        let (st, engine) = loaded.map_err(|e| to_py(py, &e))?;
        let (backend, engine) = engine.unwrap_or(("cpu", String::new()));
        Ok(Compressor {
            fingerprint: lmz::pack::hex(st.codec.fingerprint()),
            state: Mutex::new(st),
            pool,
            backend,
            engine,
            model_path: pack.display().to_string(),
        })
    }

    /// "cpu" or "gpu": the engine that runs (what "auto" chose).
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// The engine in words: "CPU, 2 thread(s), Avx512Vnni" or "GPU <adapter> (…)".
    #[getter]
    fn engine(&self) -> &str {
        &self.engine
    }

    /// Threads of the CPU engine's pool.
    #[getter]
    fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The model pack this compressor loaded.
    #[getter]
    fn model_path(&self) -> &str {
        &self.model_path
    }

    /// The model fingerprint (SHA-256 of the pack, hex) written into every file.
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn __repr__(&self) -> String {
        format!(
            "<lmz.Compressor backend={:?} engine={:?} model={:?}>",
            self.backend, self.engine, self.model_path
        )
    }

    /// Compresses `data` into a `.lmz` file, byte for byte what `lmz -c` makes of it.
    /// `progress(done, total)` counts input bytes.
    #[pyo3(signature = (data, *, progress=None))]
    fn compress<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = input(data)?;
        let out = self.run(py, progress, |st, ctl| st.compress(&data, &mut Report(ctl)))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Decompresses a `.lmz` file (from here, the CLI or the browser); the checksum of the
    /// original is verified. `progress(done, total)` counts output bytes.
    #[pyo3(signature = (data, *, progress=None))]
    fn decompress<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = input(data)?;
        let out = self.run(py, progress, |st, ctl| st.decompress(&data, &mut Report(ctl)))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Compresses each item; see `lmz.Compressor.compress_many` in the stubs for `errors`.
    #[pyo3(signature = (items, *, errors="raise", progress=None))]
    fn compress_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        errors: &str,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.many(py, items, errors, progress, Batch::Compress)
    }

    /// Decompresses each item; see `lmz.Compressor.decompress_many` in the stubs for `errors`.
    #[pyo3(signature = (items, *, errors="raise", progress=None))]
    fn decompress_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        errors: &str,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.many(py, items, errors, progress, Batch::Decompress)
    }

    /// What a `.lmz` file's header says (no model run): `lmz.info`.
    fn info<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        crate::info(py, data)
    }

    /// `lmz eval`: tokens, bits (the ideal code length under the default policy), bits per
    /// token and per byte. `progress(done, total)` counts tokens.
    #[pyo3(signature = (data, *, progress=None))]
    fn eval<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let data = input(data)?;
        let e = self.run(py, progress, |st, ctl| st.eval(&data, &mut Report(ctl)))?;
        let d = PyDict::new(py);
        d.set_item("bytes", e.bytes)?;
        d.set_item("tokens", e.tokens)?;
        d.set_item("bits", e.bits)?;
        d.set_item(
            "bits_per_token",
            if e.tokens > 0 { e.bits / e.tokens as f64 } else { 0.0 },
        )?;
        d.set_item("bpb", if e.bytes > 0 { e.bits / e.bytes as f64 } else { 0.0 })?;
        d.set_item("policy", e.policy)?;
        d.set_item("engine", &self.engine)?;
        Ok(d)
    }
}
