//! The GPU engine against the CPU engine on a model of SmolLM2-135M's shapes, random weights
//! (what a pass costs does not depend on the weights or the text), with their parity at those
//! shapes checked on the way. Made for a lent GPU machine (`scripts/device-check.sh`), where
//! the real model cannot be brought (nothing can be fetched there; 86 MB is more than what
//! travels with the tree):
//!
//! `cargo run --release --example gpu_speed -- [--window 256] [--windows 8] [--slots 1,4,16]
//!  [--steps 16] [--threads N] [--no-cpu] [--tiny]`
//!
//! `--tiny`: a model of 30 layers of width 64 instead: as many dispatches per pass as the real
//! model, each next to nothing for the device, so what is left is the engine's own cost.
//! Every measurement also reports the host thread's CPU time per forward pass (recording the
//! dispatches, submitting, reading back): what a fast device cannot hide.
//!
//! Per engine, tokens per second of:
//! - **prefill**: one sequence in windows of `--window` tokens, each window's context in the
//!   KV cache (compression's schedule), reading back whole frequency tables (what the online
//!   models need: the default) and only the coder's ranges (`--no-adapt`);
//! - **batched prefill**: one window from each of S sequences in one batch (chunks compressed
//!   side by side), ranges read back;
//! - **decoding**: S sequences in lock-step, one token each per step, tables read back, after a
//!   prefill of one window each (not timed).
//!
//! Every table and range of the GPU is checked against the CPU's (when the CPU runs).

use std::time::Instant;

use lmz::backend::cpu::CpuBackend;
use lmz::backend::gpu::{GpuBackend, GpuOptions};
use lmz::backend::Backend;
use lmz::model::{block_on, forward, forward_to_async, Batch, Fracs, Readout};
use lmz::tiny::{tiny_model, Rng, TinyShape};
use lmz::{Model, Result};

struct Args {
    window: usize,
    windows: usize,
    slots: Vec<usize>,
    steps: usize,
    threads: Option<usize>,
    cpu: bool,
    tiny: bool,
}

fn args() -> Args {
    let mut a = Args {
        window: 256,
        windows: 8,
        slots: vec![1, 4, 16],
        steps: 16,
        threads: None,
        cpu: true,
        tiny: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--window" => a.window = next(i).parse().expect("--window N"),
            "--windows" => a.windows = next(i).parse().expect("--windows N"),
            "--slots" => a.slots = next(i).split(',').map(|s| s.parse().expect("--slots N,N,…")).collect(),
            "--steps" => a.steps = next(i).parse().expect("--steps N"),
            "--threads" => a.threads = Some(next(i).parse().expect("--threads N")),
            "--no-cpu" => {
                a.cpu = false;
                i -= 1;
            }
            "--tiny" => {
                a.tiny = true;
                i -= 1;
            }
            other => panic!("unknown argument {other} (see the file's header)"),
        }
        i += 2;
    }
    a
}

/// What one engine produced: timings and a digest of every table and range, in order.
#[derive(Default)]
struct Run {
    /// (what, tokens/s, host CPU µs per forward pass)
    lines: Vec<(String, f64, f64)>,
    digest: Vec<u64>,
}

/// CPU time of the calling thread, seconds.
fn thread_cpu() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn fnv(h: &mut u64, words: &[u32]) {
    for &w in words {
        *h = (*h ^ w as u64).wrapping_mul(0x100000001b3);
    }
}

fn tokens(n: usize, seed: u64, vocab: usize) -> Vec<u32> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.below(vocab as u64) as u32).collect()
}

/// The measurements on one engine; `make(slots)` opens it with that many sequence slots.
fn measure<B: Backend>(name: &str, m: &Model, a: &Args, make: &mut dyn FnMut(usize) -> Result<B>) -> Result<Run> {
    let (cfg, fr) = (m.config(), Fracs::new(&m.weights));
    let mut run = Run::default();
    let w = a.window;
    // One window more than timed: the first of each engine runs untimed, so that making the
    // pipelines (compiling the kernels) is not counted.
    let seq = tokens(w * (a.windows + 1), 1, cfg.vocab);
    // Prefill of one sequence, window after window, tables then ranges.
    for ranges in [false, true] {
        let mut b = make(1)?;
        let mut h = 0xcbf29ce484222325u64;
        let (mut t, mut c) = (Instant::now(), thread_cpu());
        for (i, win) in seq.chunks(w).enumerate() {
            if i == 1 {
                (t, c) = (Instant::now(), thread_cpu());
            }
            let mut batch = Batch::default();
            batch.push_seq(0, win, i * w, 0);
            if ranges {
                // The symbol each row codes: the next token of the sequence.
                let sym: Vec<u32> = (0..win.len())
                    .map(|j| seq.get(i * w + j + 1).copied().unwrap_or(0))
                    .collect();
                block_on(forward_to_async(
                    &mut b,
                    cfg,
                    &fr,
                    &batch,
                    Readout::Ranges(&sym, &mut |_, c, f| {
                        fnv(&mut h, &[c, f]);
                        Ok(())
                    }),
                ))?;
            } else {
                forward(&mut b, cfg, &fr, &batch, &mut |_, f| {
                    fnv(&mut h, f);
                    Ok(())
                })?;
            }
        }
        let (s, c) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
        run.lines.push((
            format!(
                "prefill, 1 sequence, windows of {w}, {}",
                if ranges { "ranges" } else { "tables" }
            ),
            (a.windows * w) as f64 / s,
            c * 1e6 / a.windows as f64,
        ));
        run.digest.push(h);
    }
    for &slots in &a.slots {
        // One window from each of `slots` sequences in one batch: positions 0..w untimed (the
        // pipelines are made), then w..2w timed.
        let mut b = make(slots)?;
        let mut h = 0xcbf29ce484222325u64;
        let (mut t, mut c) = (Instant::now(), thread_cpu());
        for round in 0..2 {
            let mut batch = Batch::default();
            let mut sym = Vec::new();
            for s in 0..slots {
                let toks = tokens(w + 1, 100 * round + s as u64, cfg.vocab);
                batch.push_seq(s, &toks[..w], round as usize * w, 0);
                sym.extend_from_slice(&toks[1..]);
            }
            if round == 1 {
                (t, c) = (Instant::now(), thread_cpu());
            }
            block_on(forward_to_async(
                &mut b,
                cfg,
                &fr,
                &batch,
                Readout::Ranges(&sym, &mut |_, c, f| {
                    fnv(&mut h, &[c, f]);
                    Ok(())
                }),
            ))?;
        }
        let (s, c) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
        run.lines.push((
            format!("batched prefill, {slots} sequences × {w}, ranges"),
            (slots * w) as f64 / s,
            c * 1e6,
        ));
        run.digest.push(h);
        // Decoding: `slots` sequences in lock-step from position 2w (the cache above holds
        // positions 0..2w of each), one token each per step.
        let mut h = 0xcbf29ce484222325u64;
        let (t, c) = (Instant::now(), thread_cpu());
        for step in 0..a.steps {
            let mut batch = Batch::default();
            for s in 0..slots {
                batch.push_seq(s, &tokens(1, 1000 * step as u64 + s as u64, cfg.vocab), 2 * w + step, 0);
            }
            forward(&mut b, cfg, &fr, &batch, &mut |_, f| {
                fnv(&mut h, f);
                Ok(())
            })?;
        }
        let (s, c) = (t.elapsed().as_secs_f64(), thread_cpu() - c);
        run.lines.push((
            format!("decoding, {slots} sequences in lock-step, tables"),
            (slots * a.steps) as f64 / s,
            c * 1e6 / a.steps as f64,
        ));
        run.digest.push(h);
    }
    for (what, tps, host) in &run.lines {
        println!("{name:<4} {what:<56} {tps:>10.1} tokens/s  {host:>9.0} µs host CPU per pass");
    }
    Ok(run)
}

fn main() -> Result<()> {
    let a = args();
    let t = Instant::now();
    let shape = if a.tiny {
        TinyShape {
            n_layers: 30,
            ctx: 4096,
            ..TinyShape::default()
        }
    } else {
        TinyShape::smollm2()
    };
    let m = tiny_model(1, shape)?;
    let cfg = m.config().clone();
    let cache = (a.window * (a.windows + 1)).max(2 * a.window + a.steps);
    eprintln!(
        "model of {} ({} layers, dim {}, vocab {}), random weights, made in {:.1} s",
        if a.tiny {
            "a tiny shape"
        } else {
            "SmolLM2-135M's shapes"
        },
        cfg.n_layers,
        cfg.dim,
        cfg.vocab,
        t.elapsed().as_secs_f64()
    );
    let mut gpu_name = String::new();
    let gpu = measure("gpu", &m, &a, &mut |slots| {
        let b = GpuBackend::with_slots(&m, slots, cache, GpuOptions::default())?;
        if gpu_name.is_empty() {
            gpu_name = b.describe();
            eprintln!("GPU: {gpu_name}");
        }
        Ok(b)
    })?;
    if !a.cpu {
        return Ok(());
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| lmz::Error::InvalidArgument(e.to_string()))?;
    eprintln!("CPU: {threads} threads, {:?}", lmz::backend::cpu::Isa::best());
    let cpu = pool.install(|| measure("cpu", &m, &a, &mut |slots| CpuBackend::with_slots(&m, slots, cache)))?;
    println!();
    for ((what, g, _), (_, c, _)) in gpu.lines.iter().zip(&cpu.lines) {
        println!("gpu/cpu {what:<56} {:>8.2}×", g / c);
    }
    if gpu.digest != cpu.digest {
        eprintln!(
            "PARITY FAILED: the GPU's tables or ranges differ from the CPU's ({:x?} against {:x?})",
            gpu.digest, cpu.digest
        );
        std::process::exit(1);
    }
    println!(
        "parity: every table and range of the GPU equals the CPU's ({} runs)",
        gpu.digest.len()
    );
    Ok(())
}
