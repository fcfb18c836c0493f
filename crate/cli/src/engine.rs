//! Which engine runs the model in the CLI: `--backend cpu|gpu|auto` and `--threads`.
//!
//! The engine itself and the rule that picks it are the library's
//! ([`lmz::backend::engine`]), shared with the Python package; this module keeps what only a
//! command line has: the clap value and the pool the whole command runs on.

pub use lmz::backend::engine::{BackendKind, Engine};
pub use lmz::with_engine;
use lmz::{Error, Result};

/// Runs `f` on a worker of a pool of `threads` threads (default: one per core), so that the
/// CPU engine's parallel loops start inside the pool: the worker that splits a loop keeps
/// one part and the others steal the rest. Called from outside a pool, every loop would be
/// handed over whole while the calling thread sleeps until it is done — a sleep and wake-up
/// per loop, hundreds per decoded token (`--threads 1` decoded no faster than 1.4× slower
/// than two threads; BENCHMARKS.md, session 6).
pub fn on_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    if threads == Some(0) {
        return Err(Error::InvalidArgument("--threads must be at least 1".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {} threads: {e}", threads.unwrap_or(0))))?;
    Ok(pool.install(f))
}

/// `--backend`: the library's [`BackendKind`] as a clap value (an enum of the CLI's own,
/// since clap's `ValueEnum` cannot be implemented on the library's type here). The variants'
/// docs are the help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The integer CPU engine.
    Cpu,
    /// The GPU engine (wgpu compute on the WGSL kernels); any adapter, software ones too.
    Gpu,
    /// A hardware GPU adapter when there is one, else the CPU.
    Auto,
}

impl From<BackendArg> for BackendKind {
    fn from(a: BackendArg) -> BackendKind {
        match a {
            BackendArg::Cpu => BackendKind::Cpu,
            BackendArg::Gpu => BackendKind::Gpu,
            BackendArg::Auto => BackendKind::Auto,
        }
    }
}
