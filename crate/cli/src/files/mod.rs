//! The binary's gzip-like file handling (part of `main.rs`, not of the library):
//! `lmz FILE…` → `FILE.lmz`, `-d`, `-c`, `-k`, `-f`, `-o`, `-t`, stdin → stdout.
//!
//! Safety rules: output goes to a temporary file next to the destination, is synced and
//! renamed into place only when complete, then read back (length and crc32 against what was
//! written); the input is removed only after that, and never touched when anything fails.
//!
//! Memory is bounded on any input size: compression reads the input a segment at a time
//! (`Codec::compress_stream`) and spools the payloads to an unnamed temporary file until the
//! header can be written; decompression writes each group of decoded chunks as it comes
//! (`Codec::decompress_chunks`). To stdout (`-dc`) that means a file whose checksum fails at
//! the end has already been written out: the error and exit status 1 say so, as with gzip.

use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lmz::container::{Codec, ModelUse, Options};
use lmz::{Error, Result};

use crate::engine::{with_engine, BackendArg, Engine as ModelEngine};
use crate::{IoArgs, UseModel};

mod batch;

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

/// The codec and an engine, loaded on first use. The model's weights live only in the
/// engine (which lays them out its own way): the pack is read again if a later file needs a
/// bigger engine, rather than kept twice in memory.
struct Engine {
    pack: PathBuf,
    codec: Codec,
    backend: Option<ModelEngine>,
}

impl Engine {
    fn load(model_flag: Option<&Path>) -> Result<Engine> {
        let pack = lmz::fetch::default_pack_path(model_flag);
        let model = lmz::fetch::load(&pack)?;
        let codec = Codec::new(&model)?;
        drop(model);
        release_freed_memory();
        Ok(Engine {
            pack,
            codec,
            backend: None,
        })
    }

    /// The codec and an engine with a cache of at least `window` positions in at least
    /// `slots` sequences.
    fn backend(&mut self, kind: BackendArg, window: usize, slots: usize) -> Result<(&Codec, &mut ModelEngine)> {
        let window = window.clamp(1, self.codec.config().ctx);
        if self
            .backend
            .as_ref()
            .is_none_or(|b| b.cache_len() < window || b.slots() < slots)
        {
            self.backend = None; // free the old cache first
            let model = lmz::fetch::load(&self.pack)?;
            if model.fingerprint != *self.codec.fingerprint() {
                return Err(Error::InvalidArgument(format!(
                    "the model pack {} changed while lmz ran",
                    self.pack.display()
                )));
            }
            self.backend = Some(ModelEngine::open(kind.into(), &model, slots, window)?);
            drop(model);
            release_freed_memory();
        }
        let b = self
            .backend
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("no engine".into()))?;
        Ok((&self.codec, b))
    }
}

/// Returns freed heap memory to the system. The model pack (~99 MB) is freed once the engine
/// has its own copy of the weights, but glibc keeps freed heap pages resident (its mmap
/// threshold grows after the first large free), which cost ~99 MB of peak RSS in every run
/// (scripts/memory.sh). Elsewhere a no-op.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

enum Dest {
    Stdout,
    File { path: PathBuf, remove_input: bool },
    Nowhere,
}

/// Runs the file mode; the exit code says whether every file succeeded.
pub fn run(model_flag: Option<&Path>, a: IoArgs) -> Result<ExitCode> {
    crate::engine::on_threads(a.threads, || run_files(model_flag, &a))?
}

fn run_files(model_flag: Option<&Path>, a: &IoArgs) -> Result<ExitCode> {
    let inputs: Vec<PathBuf> = if a.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        a.files.clone()
    };
    if a.output.is_some() && inputs.len() != 1 {
        eprintln!("lmz: -o/--output takes exactly one input file");
        return Ok(ExitCode::from(2));
    }
    let mut engine: Option<Engine> = None;
    let mut ok = true;
    let mut say = |input: &Path, e: &Error| {
        eprintln!("lmz: {}: error [{}]: {e}", display(input), e.code());
        ok = false;
    };
    // Several small files are coded together (batch.rs); the others one by one, in order.
    let together = inputs.len() > 1;
    let mut i = 0;
    while i < inputs.len() {
        let run: Vec<&Path> = inputs[i..]
            .iter()
            .take_while(|p| together && batch::is_small(p))
            .map(PathBuf::as_path)
            .collect();
        if run.len() > 1 {
            for g in batch::groups(&run) {
                for (input, r) in batch::group(model_flag, a, &g, &mut engine) {
                    if let Err(e) = r {
                        say(&input, &e);
                    }
                }
            }
            i += run.len();
            continue;
        }
        if let Err(e) = one(model_flag, a, &inputs[i], &mut engine) {
            say(&inputs[i], &e);
        }
        i += 1;
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
    let dest = destination(a, input, stdin, decompress)?;
    let (meta, reader) = open_input(input, stdin)?;
    let total = meta.as_ref().map_or(0, |m| m.len());

    if engine.is_none() {
        *engine = Some(Engine::load(model_flag)?);
    }
    let Some(eng) = engine.as_mut() else {
        return Err(Error::InvalidArgument("no model".into()));
    };
    let bar = bar(a, total, if decompress { "decompressing" } else { "compressing" });
    let t0 = Instant::now();
    let mut out = Output::open(&dest)?;
    let read = if decompress {
        decompress_into(eng, a, input, reader, &bar, &mut out)?
    } else {
        compress_into(eng, a, reader, total, &bar, &mut out)?
    };
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let written = out.finish(meta.as_ref())?;
    if let Dest::File { remove_input: true, .. } = &dest {
        if !stdin {
            std::fs::remove_file(input).map_err(|e| Error::io(input, e))?;
        }
    }
    if a.verbose || (a.test && !a.quiet) {
        let (orig, comp) = if decompress { (written, read) } else { (read, written) };
        report(a, input, eng, orig, comp, secs);
    }
    Ok(())
}

/// Where the output goes, decided (and refused) before any work is done.
fn destination(a: &IoArgs, input: &Path, stdin: bool, decompress: bool) -> Result<Dest> {
    let dest = if a.test {
        Dest::Nowhere
    } else if a.stdout || (stdin && a.output.is_none()) {
        Dest::Stdout
    } else if let Some(o) = &a.output {
        Dest::File {
            path: o.clone(),
            remove_input: false,
        }
    } else {
        Dest::File {
            path: output_name(a, input, decompress)?,
            remove_input: !a.keep,
        }
    };
    if let Dest::File { path, .. } = &dest {
        if path.exists() && !a.force {
            return Err(Error::InvalidArgument(format!(
                "{} already exists; use -f to overwrite",
                path.display()
            )));
        }
    }
    if matches!(dest, Dest::Stdout) && !decompress && std::io::stdout().is_terminal() && !a.force {
        return Err(Error::InvalidArgument(
            "compressed data not written to a terminal (use -f to force, or -c > FILE)".into(),
        ));
    }
    Ok(dest)
}

/// The output file's name when none is given: the input's with [`SUFFIX`] added
/// (compressing) or taken off (decompressing).
fn output_name(a: &IoArgs, input: &Path, decompress: bool) -> Result<PathBuf> {
    let name = input.to_string_lossy();
    if decompress {
        match name.strip_suffix(SUFFIX) {
            Some(stem) if !stem.is_empty() && !stem.ends_with('/') => Ok(PathBuf::from(stem)),
            _ => Err(Error::InvalidArgument(format!(
                "unknown suffix (expected {SUFFIX}); use -c or -o to choose the output"
            ))),
        }
    } else {
        if name.ends_with(SUFFIX) && !a.force {
            return Err(Error::InvalidArgument(format!(
                "already has the {SUFFIX} suffix; unchanged (use -f to compress it again)"
            )));
        }
        Ok(PathBuf::from(format!("{name}{SUFFIX}")))
    }
}

/// The input's metadata (none for stdin; refused unless a regular file) and a reader on it.
fn open_input(input: &Path, stdin: bool) -> Result<(Option<std::fs::Metadata>, Box<dyn Read>)> {
    let meta = if stdin {
        None
    } else {
        Some(std::fs::metadata(input).map_err(|e| Error::io(input, e))?)
    };
    if meta.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(Error::InvalidArgument("not a regular file".into()));
    }
    let reader: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(input).map_err(|e| Error::io(input, e))?)
    };
    Ok((meta, reader))
}

/// Decompresses `reader` into `out`; returns the compressed size read.
fn decompress_into(
    eng: &mut Engine,
    a: &IoArgs,
    input: &Path,
    mut reader: Box<dyn Read>,
    bar: &indicatif::ProgressBar,
    out: &mut Output,
) -> Result<u64> {
    // The compressed file is read whole (the chunk table comes first); the original is
    // written chunk by chunk as it decodes, so memory holds the file and a few chunks.
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|e| Error::io(input, e))?;
    let info = lmz::container::info(&data)?;
    bar.set_length(info.original_len);
    set_style(bar, info.original_len);
    let window = info
        .window_stride
        .map_or(eng.codec.default_policy().window, |(w, _)| w as usize);
    // Model chunks decode in lock-step, one sequence slot each (the weights are read once
    // per step for all of them); the KV cache costs ~47 MB per slot at window 2048.
    let slots = info.decode_slots();
    let (codec, backend) = eng.backend(a.backend, window, slots)?;
    with_engine!(backend, b => codec.decompress_chunks(b, &data, &mut |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    }, &mut |part| out.write(part)))?;
    Ok(data.len() as u64)
}

/// Compresses `reader` (`total` bytes if known, else 0) into `out`; returns the original
/// size read.
fn compress_into(
    eng: &mut Engine,
    a: &IoArgs,
    reader: Box<dyn Read>,
    total: u64,
    bar: &indicatif::ProgressBar,
    out: &mut Output,
) -> Result<u64> {
    let opts = compress_options(a, &eng.codec);
    // Payloads go to an unnamed temporary file as they are made; the head (header and
    // chunk table) is known only at the end and goes first.
    let mut spool = std::io::BufWriter::new(tempfile::tempfile().map_err(|e| Error::io(std::env::temp_dir(), e))?);
    let mut counted = Counted { inner: reader, n: 0 };
    let window = eng.codec.default_policy().window;
    let (codec, backend) = eng.backend(a.backend, window, 1)?;
    let head = with_engine!(backend, b => codec.compress_stream(b, &mut counted, total, &opts, &mut |d, _| bar.set_position(d), &mut |p| {
        spool.write_all(p).map_err(|e| Error::io(std::env::temp_dir(), e))
    }))?;
    out.write(&head)?;
    let mut spool = spool
        .into_inner()
        .map_err(|e| Error::io(std::env::temp_dir(), e.into_error()))?;
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = spool.read(&mut buf).map_err(|e| Error::io(std::env::temp_dir(), e))?;
        if n == 0 {
            break;
        }
        out.write(&buf[..n])?;
    }
    Ok(counted.n)
}

/// The container options the command line asks for.
fn compress_options(a: &IoArgs, codec: &Codec) -> Options {
    Options {
        chunk_tokens: a.chunk_tokens.unwrap_or(lmz::container::DEFAULT_CHUNK_TOKENS),
        policy: (a.no_adapt || a.no_ngram).then(|| lmz::eval::Policy {
            adapt: !a.no_adapt,
            ngram: false,
            ..codec.default_policy()
        }),
        model: match a.use_model {
            UseModel::Auto => ModelUse::Auto,
            UseModel::Always => ModelUse::Always,
            UseModel::Force => ModelUse::Force,
            UseModel::Never => ModelUse::Never,
        },
        compact: true,
        segment_bytes: lmz::container::SEGMENT_BYTES,
    }
}

/// The `-v` / `-t` line on stderr: sizes, bits per byte, time, speed and engine.
fn report(a: &IoArgs, input: &Path, eng: &Engine, orig: u64, comp: u64, secs: f64) {
    let bpb = if orig > 0 { 8.0 * comp as f64 / orig as f64 } else { 0.0 };
    let what = if a.test {
        "OK".to_string()
    } else {
        format!("{orig} ↔ {comp} bytes")
    };
    let engine = eng
        .backend
        .as_ref()
        .map_or_else(|| "no model run".to_string(), |b| b.describe());
    eprintln!(
        "{}: {what}, {bpb:.4} bpb, {:.1} s, {:.0} bytes/s ({engine})",
        display(input),
        secs,
        orig as f64 / secs.max(1e-9)
    );
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// A progress bar on a terminal (nothing when piped or `-q`): bytes, rate and ETA, or —
/// while the length is unknown (`len` 0: compressing stdin) — bytes and rate only.
fn bar(a: &IoArgs, len: u64, what: &'static str) -> indicatif::ProgressBar {
    if a.quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    set_style(&bar, len);
    bar.set_message(what);
    bar
}

fn set_style(bar: &indicatif::ProgressBar, len: u64) {
    let template = if len == 0 {
        "{msg} {spinner} {bytes}, {bytes_per_sec}, {elapsed}"
    } else {
        "{msg} [{bar:30}] {bytes}/{total_bytes}, {bytes_per_sec}, ETA {eta}"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
}

/// Where one run's output goes, written as it is made: stdout, nowhere (`-t`), or a
/// temporary file beside the destination that [`Output::finish`] syncs, gives the input's
/// permissions and modification time, renames into place and reads back (length and crc32
/// of everything written). Dropped unfinished (an error), the temporary file is removed.
enum Output {
    Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>, u64),
    Nowhere(u64),
    File {
        file: std::io::BufWriter<std::fs::File>,
        tmp: Temp,
        path: PathBuf,
        crc: crc32fast::Hasher,
        n: u64,
    },
}

impl Output {
    fn open(dest: &Dest) -> Result<Output> {
        Ok(match dest {
            Dest::Stdout => Output::Stdout(std::io::BufWriter::new(std::io::stdout().lock()), 0),
            Dest::Nowhere => Output::Nowhere(0),
            Dest::File { path, .. } => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "out".into());
                let tmp = dir.join(format!(".{name}.lmz.tmp{}", std::process::id()));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| Error::io(&tmp, e))?;
                Output::File {
                    file: std::io::BufWriter::new(f),
                    tmp: Temp::new(tmp),
                    path: path.clone(),
                    crc: crc32fast::Hasher::new(),
                    n: 0,
                }
            }
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Output::Stdout(w, n) => {
                w.write_all(bytes).map_err(|e| Error::io("(stdout)", e))?;
                *n += bytes.len() as u64;
            }
            Output::Nowhere(n) => *n += bytes.len() as u64,
            Output::File { file, tmp, crc, n, .. } => {
                file.write_all(bytes).map_err(|e| Error::io(&tmp.0 .0, e))?;
                crc.update(bytes);
                *n += bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// Completes the output; returns how many bytes it holds.
    fn finish(self, src: Option<&std::fs::Metadata>) -> Result<u64> {
        match self {
            Output::Stdout(mut w, n) => {
                w.flush().map_err(|e| Error::io("(stdout)", e))?;
                Ok(n)
            }
            Output::Nowhere(n) => Ok(n),
            Output::File {
                file,
                tmp,
                path,
                crc,
                n,
            } => {
                let tmp = &tmp.0 .0;
                let f = file.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
                if let Some(m) = src {
                    f.set_permissions(m.permissions()).map_err(|e| Error::io(tmp, e))?;
                    if let Ok(t) = m.modified() {
                        f.set_times(std::fs::FileTimes::new().set_modified(t))
                            .map_err(|e| Error::io(tmp, e))?;
                    }
                }
                f.sync_all().map_err(|e| Error::io(tmp, e))?;
                drop(f);
                std::fs::rename(tmp, &path).map_err(|e| Error::io(&path, e))?;
                // Read back: what is on disk must be what was written.
                let mut back = crc32fast::Hasher::new();
                let mut r = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                let (mut buf, mut m) = (vec![0u8; 1 << 16], 0u64);
                loop {
                    let k = r.read(&mut buf).map_err(|e| Error::io(&path, e))?;
                    if k == 0 {
                        break;
                    }
                    back.update(&buf[..k]);
                    m += k as u64;
                }
                if m != n || back.finalize() != crc.finalize() {
                    let _ = std::fs::remove_file(&path);
                    return Err(Error::io(
                        &path,
                        std::io::Error::other("the written file does not read back the same"),
                    ));
                }
                Ok(n)
            }
        }
    }
}

/// A temporary file's name: registered in [`PENDING`] while it lives, and removed when it
/// is dropped (an unfinished output; after the rename there is nothing left to remove).
struct Temp(Pending);

impl Temp {
    fn new(path: PathBuf) -> Temp {
        Temp(Pending::new(&path))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0 .0);
    }
}
