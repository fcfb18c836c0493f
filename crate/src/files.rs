//! The binary's gzip-like file handling (part of `main.rs`, not of the library):
//! `lmz FILE…` → `FILE.lmz`, `-d`, `-c`, `-k`, `-f`, `-o`, `-t`, stdin → stdout.
//!
//! Safety rules: output goes to a temporary file next to the destination, is synced and
//! renamed into place only when complete, then read back and compared; the input is removed
//! only after that, and never touched when anything fails.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lmz::container::{Codec, ModelUse, Options};
use lmz::{Error, Result};

use crate::engine::{with_engine, BackendKind, Engine as ModelEngine};
use crate::{IoArgs, UseModel};

const SUFFIX: &str = ".lmz";

/// Temporary files being written right now: removed if the process is interrupted.
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// On SIGINT/SIGTERM/SIGHUP: remove the temporary files being written, say so, exit 130.
/// (Outputs only ever appear under their final name by a rename of a complete, synced file,
/// and inputs are removed only after that; so an interrupted run leaves nothing behind.)
pub fn remove_temporaries_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        if let Ok(v) = PENDING.lock() {
            for p in v.iter() {
                let _ = std::fs::remove_file(p);
            }
        }
        eprintln!("lmz: interrupted");
        std::process::exit(130);
    });
}

/// Registers a temporary file in [`PENDING`] for as long as it lives.
struct Pending(PathBuf);

impl Pending {
    fn new(p: &Path) -> Pending {
        if let Ok(mut v) = PENDING.lock() {
            v.push(p.to_path_buf());
        }
        Pending(p.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut v) = PENDING.lock() {
            v.retain(|p| p != &self.0);
        }
    }
}

/// The model, its codec and an engine, loaded on first use.
struct Engine {
    model: lmz::Model,
    codec: Codec,
    backend: Option<ModelEngine>,
}

impl Engine {
    fn load(model_flag: Option<&Path>) -> Result<Engine> {
        let model = lmz::fetch::load(&lmz::fetch::default_pack_path(model_flag))?;
        let codec = Codec::new(&model)?;
        Ok(Engine { model, codec, backend: None })
    }

}

enum Dest {
    Stdout,
    File { path: PathBuf, remove_input: bool },
    Nowhere,
}

/// Runs the file mode; the exit code says whether every file succeeded.
pub fn run(model_flag: Option<&Path>, a: IoArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads {
        if n == 0 {
            return Err(Error::InvalidArgument("--threads must be at least 1".into()));
        }
        // Only fails if the global pool was already built, which nothing else does.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    let inputs: Vec<PathBuf> = if a.files.is_empty() { vec![PathBuf::from("-")] } else { a.files.clone() };
    if a.output.is_some() && inputs.len() != 1 {
        eprintln!("lmz: -o/--output takes exactly one input file");
        return Ok(ExitCode::from(2));
    }
    let mut engine: Option<Engine> = None;
    let mut ok = true;
    for input in &inputs {
        if let Err(e) = one(model_flag, &a, input, &mut engine) {
            eprintln!("lmz: {}: error [{}]: {e}", display(input), e.code());
            ok = false;
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn display(p: &Path) -> String {
    if p == Path::new("-") {
        "(stdin)".into()
    } else {
        p.display().to_string()
    }
}

fn one(model_flag: Option<&Path>, a: &IoArgs, input: &Path, engine: &mut Option<Engine>) -> Result<()> {
    let stdin = input == Path::new("-");
    let decompress = a.decompress || a.test;
    // Where the output goes, decided (and refused) before any work is done.
    let dest = if a.test {
        Dest::Nowhere
    } else if a.stdout || (stdin && a.output.is_none()) {
        Dest::Stdout
    } else if let Some(o) = &a.output {
        Dest::File { path: o.clone(), remove_input: false }
    } else {
        let name = input.to_string_lossy();
        let path = if decompress {
            match name.strip_suffix(SUFFIX) {
                Some(stem) if !stem.is_empty() && !stem.ends_with('/') => PathBuf::from(stem),
                _ => return Err(Error::InvalidArgument(format!("unknown suffix (expected {SUFFIX}); use -c or -o to choose the output"))),
            }
        } else {
            if name.ends_with(SUFFIX) && !a.force {
                return Err(Error::InvalidArgument(format!("already has the {SUFFIX} suffix; unchanged (use -f to compress it again)")));
            }
            PathBuf::from(format!("{name}{SUFFIX}"))
        };
        Dest::File { path, remove_input: !a.keep }
    };
    if let Dest::File { path, .. } = &dest {
        if path.exists() && !a.force {
            return Err(Error::InvalidArgument(format!("{} already exists; use -f to overwrite", path.display())));
        }
    }
    if matches!(dest, Dest::Stdout) && !decompress && std::io::stdout().is_terminal() && !a.force {
        return Err(Error::InvalidArgument("compressed data not written to a terminal (use -f to force, or -c > FILE)".into()));
    }
    let meta = if stdin { None } else { Some(std::fs::metadata(input).map_err(|e| Error::io(input, e))?) };
    if meta.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(Error::InvalidArgument("not a regular file".into()));
    }
    let data = read_input(input)?;

    if engine.is_none() {
        *engine = Some(Engine::load(model_flag)?);
    }
    let Some(eng) = engine.as_mut() else { return Err(Error::InvalidArgument("no model".into())) };
    let bar = bar(a, data.len() as u64, if decompress { "decompressing" } else { "compressing" });
    let t0 = Instant::now();
    let out = if decompress {
        let info = lmz::container::info(&data)?;
        bar.set_length(info.original_len);
        let window = info.window_stride.map_or(eng.codec.default_policy().window, |(w, _)| w as usize);
        // Model chunks decode in lock-step, one sequence slot each (the weights are read once
        // per step for all of them); the KV cache costs ~47 MB per slot at window 2048.
        let model_chunks = info.chunks.iter().filter(|c| c.method == lmz::container::Method::Model).count();
        let backend = eng_backend(&mut eng.backend, a.backend, &eng.model, window, model_chunks.clamp(1, DECODE_SLOTS))?;
        with_engine!(backend, b => eng.codec.decompress(b, &data, &mut |d, t| {
            bar.set_length(t);
            bar.set_position(d);
        }))?
    } else {
        let opts = Options {
            chunk_tokens: a.chunk_tokens.unwrap_or(lmz::container::DEFAULT_CHUNK_TOKENS),
            policy: None,
            model: match a.use_model {
                UseModel::Auto => ModelUse::Auto,
                UseModel::Always => ModelUse::Always,
                UseModel::Force => ModelUse::Force,
                UseModel::Never => ModelUse::Never,
            },
            compact: true,
        };
        let window = eng.codec.default_policy().window;
        let backend = eng_backend(&mut eng.backend, a.backend, &eng.model, window, 1)?;
        with_engine!(backend, b => eng.codec.compress(b, &data, &opts, &mut |d, _| bar.set_position(d)))?
    };
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();

    match &dest {
        Dest::Nowhere => {}
        Dest::Stdout => {
            let mut so = std::io::stdout().lock();
            so.write_all(&out).and_then(|_| so.flush()).map_err(|e| Error::io("(stdout)", e))?;
        }
        Dest::File { path, remove_input } => {
            write_verified(path, &out, meta.as_ref())?;
            if *remove_input && !stdin {
                std::fs::remove_file(input).map_err(|e| Error::io(input, e))?;
            }
        }
    }
    if a.verbose || (a.test && !a.quiet) {
        let (orig, comp) = if decompress { (out.len(), data.len()) } else { (data.len(), out.len()) };
        let bpb = if orig > 0 { 8.0 * comp as f64 / orig as f64 } else { 0.0 };
        let what = if a.test { "OK".to_string() } else { format!("{orig} ↔ {comp} bytes") };
        let engine = eng.backend.as_ref().map_or_else(|| "no model run".to_string(), |b| b.describe());
        eprintln!("{}: {what}, {bpb:.4} bpb, {:.1} s, {:.0} bytes/s ({engine})", display(input), secs, orig as f64 / secs.max(1e-9));
    }
    Ok(())
}

/// The most chunks decoded in lock-step.
const DECODE_SLOTS: usize = 4;

/// The engine with a cache of at least `window` positions in at least `slots` sequences (a
/// free function so the codec can stay borrowed beside it).
fn eng_backend<'a>(eng: &'a mut Option<ModelEngine>, kind: BackendKind, model: &lmz::Model, window: usize, slots: usize) -> Result<&'a mut ModelEngine> {
    let window = window.clamp(1, model.config().ctx);
    if eng.as_ref().is_none_or(|b| b.cache_len() < window || b.slots() < slots) {
        *eng = None; // free the old cache first
        *eng = Some(ModelEngine::open(kind, model, slots, window)?);
    }
    eng.as_mut().ok_or_else(|| Error::InvalidArgument("no engine".into()))
}

fn read_input(input: &Path) -> Result<Vec<u8>> {
    if input == Path::new("-") {
        let mut v = Vec::new();
        std::io::stdin().lock().read_to_end(&mut v).map_err(|e| Error::io("(stdin)", e))?;
        Ok(v)
    } else {
        std::fs::read(input).map_err(|e| Error::io(input, e))
    }
}

fn bar(a: &IoArgs, len: u64, what: &'static str) -> indicatif::ProgressBar {
    if a.quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}, {bytes_per_sec}, ETA {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()).progress_chars("=> "));
    bar.set_message(what);
    bar
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, gives it the input's
/// permissions and modification time, renames it into place and reads it back.
fn write_verified(path: &Path, bytes: &[u8], src: Option<&std::fs::Metadata>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.lmz.tmp{}", std::process::id()));
    let _pending = Pending::new(&tmp);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        if let Some(m) = src {
            f.set_permissions(m.permissions()).map_err(|e| Error::io(&tmp, e))?;
            if let Ok(t) = m.modified() {
                f.set_times(std::fs::FileTimes::new().set_modified(t)).map_err(|e| Error::io(&tmp, e))?;
            }
        }
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        let back = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if back != bytes {
            let _ = std::fs::remove_file(path);
            return Err(Error::io(path, std::io::Error::other("the written file does not read back the same")));
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
