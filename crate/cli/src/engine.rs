//! Which engine runs the model in the CLI (part of `main.rs`, not of the library):
//! `--backend cpu|gpu|auto`.
//!
//! `auto` takes the GPU when there is a hardware adapter and the CPU otherwise: a software
//! adapter (Mesa lavapipe, SwiftShader) runs the same kernels on the same cores, slower than
//! the native CPU engine (BENCHMARKS.md), so only `--backend gpu` picks one. Every engine
//! gives the same bits, so the choice never changes a file.

use lmz::backend::cpu::CpuBackend;
#[cfg(feature = "gpu")]
use lmz::backend::gpu::{self, Auto, Gpu, GpuBackend, GpuOptions};
use lmz::{Error, Model, Result};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The integer CPU engine.
    Cpu,
    /// The GPU engine (wgpu compute on the WGSL kernels); any adapter, software ones too.
    Gpu,
    /// A hardware GPU adapter when there is one, else the CPU.
    Auto,
}

/// An engine: the CPU or the GPU one (one per process, so the size difference of the
/// variants does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    Cpu(CpuBackend),
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuBackend>),
}

/// Runs `$body` with `$b` bound to the engine inside (`&mut` of its concrete type).
macro_rules! with_engine {
    ($e:expr, $b:ident => $body:expr) => {
        match $e {
            $crate::engine::Engine::Cpu($b) => $body,
            #[cfg(feature = "gpu")]
            $crate::engine::Engine::Gpu($b) => {
                let $b = &mut **$b;
                $body
            }
        }
    };
}
pub(crate) use with_engine;

impl Engine {
    /// Opens `kind` with `slots` sequences of `cache_len` positions.
    pub fn open(kind: BackendKind, model: &Model, slots: usize, cache_len: usize) -> Result<Engine> {
        match kind {
            BackendKind::Cpu => Ok(Engine::Cpu(CpuBackend::with_slots(model, slots, cache_len)?)),
            #[cfg(feature = "gpu")]
            BackendKind::Gpu => Ok(Engine::Gpu(Box::new(GpuBackend::with_slots(
                model,
                slots,
                cache_len,
                GpuOptions::default(),
            )?))),
            // The library's rule (`lmz::backend::gpu::auto`), the browser's too.
            #[cfg(feature = "gpu")]
            BackendKind::Auto => match gpu::auto(Gpu::new(GpuOptions::default()))? {
                Auto::Gpu(g) => match GpuBackend::on(*g, model, slots, cache_len) {
                    Ok(b) => Ok(Engine::Gpu(Box::new(b))),
                    Err(e) if gpu::auto_falls_back(&e) => {
                        Ok(Engine::Cpu(CpuBackend::with_slots(model, slots, cache_len)?))
                    }
                    Err(e) => Err(e),
                },
                Auto::Cpu(_) => Ok(Engine::Cpu(CpuBackend::with_slots(model, slots, cache_len)?)),
            },
            #[cfg(not(feature = "gpu"))]
            BackendKind::Gpu => Err(Error::GpuNoAdapter("this lmz was built without the gpu feature".into())),
            #[cfg(not(feature = "gpu"))]
            BackendKind::Auto => Ok(Engine::Cpu(CpuBackend::with_slots(model, slots, cache_len)?)),
        }
    }

    /// What [`Engine::open`] would run for `kind`, without loading the model: "CPU, 2
    /// thread(s), Avx512Vnni" (the CPU kernels: `Isa::best`) or the GPU adapter ("GPU NVIDIA H100 … (Vulkan, DiscreteGpu, dot4I8Packed)").
    pub fn probe(kind: BackendKind) -> Result<String> {
        let cpu = cpu_words;
        match kind {
            BackendKind::Cpu => Ok(cpu()),
            #[cfg(feature = "gpu")]
            BackendKind::Gpu => Ok(format!("GPU {}", Gpu::new(GpuOptions::default())?.describe())),
            #[cfg(feature = "gpu")]
            BackendKind::Auto => match gpu::auto(Gpu::new(GpuOptions::default()))? {
                Auto::Gpu(g) => Ok(format!("GPU {}", g.describe())),
                Auto::Cpu(why) => Ok(format!("{} ({why})", cpu())),
            },
            #[cfg(not(feature = "gpu"))]
            BackendKind::Gpu => Err(Error::GpuNoAdapter("this lmz was built without the gpu feature".into())),
            #[cfg(not(feature = "gpu"))]
            BackendKind::Auto => Ok(cpu()),
        }
    }

    /// For reports: "CPU, 2 thread(s), Avx512Vnni" or "GPU llvmpipe (…) (Vulkan, Cpu, dot4I8Packed)".
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(_) => cpu_words(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(g) => format!("GPU {}", g.describe()),
        }
    }

    pub fn cache_len(&self) -> usize {
        use lmz::backend::Backend;
        match self {
            Engine::Cpu(b) => b.cache_len(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(b) => b.cache_len(),
        }
    }

    pub fn slots(&self) -> usize {
        use lmz::backend::Backend;
        match self {
            Engine::Cpu(b) => b.slots(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(b) => b.slots(),
        }
    }
}

/// "CPU, 2 thread(s), Avx512Vnni": the threads and the kernels the CPU engine runs.
fn cpu_words() -> String {
    format!(
        "CPU, {} thread(s), {:?}",
        rayon::current_num_threads(),
        lmz::backend::cpu::Isa::best()
    )
}
