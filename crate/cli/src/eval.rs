//! `lmz eval`: the ideal code length of a file under the model (integer engine or the float
//! reference), as text or JSON (part of `main.rs`, not of the library).

use std::path::PathBuf;

use lmz::fetch;

use crate::engine::{self, BackendArg, BackendKind};

#[derive(clap::Args)]
pub struct EvalArgs {
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
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
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

pub fn eval(model_flag: Option<&std::path::Path>, a: EvalArgs) -> lmz::Result<()> {
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
        score_integer(a.backend.into(), &model, &tokens, &policy, &bar, &mut adapts)?
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

pub fn progress_bar(len: u64, what: &'static str) -> indicatif::ProgressBar {
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
