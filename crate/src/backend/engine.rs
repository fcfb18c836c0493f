//! Which engine runs the model: `cpu`, `gpu` or `auto`, opened for native callers (the CLI's
//! `--backend`, the Python package's `backend=`). One rule in one place, so the command line
//! and the bindings can never pick differently.
//!
//! `auto` is [`gpu::auto`]: a hardware adapter runs the model; a software one (Mesa lavapipe,
//! SwiftShader: the same kernels on the CPU's own cores, slower than the CPU engine —
//! BENCHMARKS.md), none, or one too small or failing leaves it to the CPU engine. Every engine
//! gives the same bits, so the choice never changes a file.
//!
//! Native only: opening the GPU engine blocks on wgpu (`pollster`); the browser bindings
//! open theirs asynchronously (`crate/wasm`).

use std::str::FromStr;

use crate::backend::cpu::{self, CpuBackend};
#[cfg(feature = "gpu")]
use crate::backend::gpu::{self, Auto, Gpu, GpuBackend, GpuOptions};
use crate::error::{Error, Result};
use crate::pack::Model;

/// Which engine to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The integer CPU engine.
    Cpu,
    /// The GPU engine (wgpu compute on the WGSL kernels); any adapter, software ones too.
    Gpu,
    /// A hardware GPU adapter when there is one, else the CPU.
    Auto,
}

impl BackendKind {
    /// "cpu", "gpu" or "auto": the name [`BackendKind::from_str`] reads.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Gpu => "gpu",
            BackendKind::Auto => "auto",
        }
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<BackendKind> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "gpu" => Ok(BackendKind::Gpu),
            "auto" => Ok(BackendKind::Auto),
            other => Err(Error::InvalidArgument(format!(
                "backend {other:?}: use \"cpu\", \"gpu\" or \"auto\""
            ))),
        }
    }
}

/// An opened engine: the CPU or the GPU one. Callers hold one per compressor or process, so
/// the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    Cpu(CpuBackend),
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuBackend>),
}

/// `with_engine!(engine, b => body)`: runs `body` with `b` bound to the engine inside
/// `engine` (a `&mut Engine`), as `&mut` of its concrete type — the library's calls are
/// generic over [`crate::backend::Backend`], so each variant needs its own instantiation.
///
/// A macro rather than a method taking a closure: a closure cannot be generic over `B`.
/// Defined twice, by the library's `gpu` feature, so that the `cfg` is decided here and not
/// in the crate that expands it (whose own features need not match the library's).
#[cfg(feature = "gpu")]
#[macro_export]
macro_rules! with_engine {
    ($e:expr, $b:ident => $body:expr) => {
        match $e {
            $crate::backend::engine::Engine::Cpu($b) => $body,
            $crate::backend::engine::Engine::Gpu($b) => {
                let $b = &mut **$b;
                $body
            }
        }
    };
}

/// `with_engine!(engine, b => body)` without the `gpu` feature (see the other definition).
#[cfg(not(feature = "gpu"))]
#[macro_export]
macro_rules! with_engine {
    ($e:expr, $b:ident => $body:expr) => {
        match $e {
            $crate::backend::engine::Engine::Cpu($b) => $body,
        }
    };
}

pub use crate::with_engine;

impl Engine {
    /// Opens `kind` with `slots` sequences of `cache_len` positions.
    pub fn open(kind: BackendKind, model: &Model, slots: usize, cache_len: usize) -> Result<Engine> {
        let cpu = || Ok(Engine::Cpu(CpuBackend::with_slots(model, slots, cache_len)?));
        match kind {
            BackendKind::Cpu => cpu(),
            #[cfg(feature = "gpu")]
            BackendKind::Gpu => Ok(Engine::Gpu(Box::new(GpuBackend::with_slots(
                model,
                slots,
                cache_len,
                GpuOptions::default(),
            )?))),
            // The browser's rule too (crate/wasm opens its engines the same way, async).
            #[cfg(feature = "gpu")]
            BackendKind::Auto => match gpu::auto(Gpu::new(GpuOptions::default()))? {
                Auto::Gpu(g) => match GpuBackend::on(*g, model, slots, cache_len) {
                    Ok(b) => Ok(Engine::Gpu(Box::new(b))),
                    Err(e) if gpu::auto_falls_back(&e) => cpu(),
                    Err(e) => Err(e),
                },
                Auto::Cpu(_) => cpu(),
            },
            #[cfg(not(feature = "gpu"))]
            BackendKind::Gpu => Err(no_gpu_feature()),
            #[cfg(not(feature = "gpu"))]
            BackendKind::Auto => cpu(),
        }
    }

    /// What [`Engine::open`] would run for `kind`, without loading the model: "CPU, 2
    /// thread(s), Avx512Vnni" (the CPU kernels: [`cpu::Isa::best`]) or the GPU adapter
    /// ("GPU NVIDIA H100 … (Vulkan, DiscreteGpu, dot4I8Packed)"); for `auto` on the CPU, why.
    pub fn probe(kind: BackendKind) -> Result<String> {
        match kind {
            BackendKind::Cpu => Ok(cpu_words()),
            #[cfg(feature = "gpu")]
            BackendKind::Gpu => Ok(format!("GPU {}", Gpu::new(GpuOptions::default())?.describe())),
            #[cfg(feature = "gpu")]
            BackendKind::Auto => match gpu::auto(Gpu::new(GpuOptions::default()))? {
                Auto::Gpu(g) => Ok(format!("GPU {}", g.describe())),
                Auto::Cpu(why) => Ok(format!("{} ({why})", cpu_words())),
            },
            #[cfg(not(feature = "gpu"))]
            BackendKind::Gpu => Err(no_gpu_feature()),
            #[cfg(not(feature = "gpu"))]
            BackendKind::Auto => Ok(cpu_words()),
        }
    }

    /// "cpu" or "gpu": what runs (what `auto` chose).
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Cpu(_) => "cpu",
            #[cfg(feature = "gpu")]
            Engine::Gpu(_) => "gpu",
        }
    }

    /// For reports: "CPU, 2 thread(s), Avx512Vnni" (the threads of the pool it is called on)
    /// or "GPU llvmpipe (…) (Vulkan, Cpu, dot4I8Packed)".
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(_) => cpu_words(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(g) => format!("GPU {}", g.describe()),
        }
    }

    /// The most positions one sequence may use ([`crate::backend::Backend::cache_len`]).
    pub fn cache_len(&self) -> usize {
        use crate::backend::Backend;
        match self {
            Engine::Cpu(b) => b.cache_len(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(b) => b.cache_len(),
        }
    }

    /// The sequences the KV cache holds ([`crate::backend::Backend::slots`]).
    pub fn slots(&self) -> usize {
        use crate::backend::Backend;
        match self {
            Engine::Cpu(b) => b.slots(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(b) => b.slots(),
        }
    }
}

/// "CPU, 2 thread(s), Avx512Vnni": the threads and the kernels the CPU engine runs.
fn cpu_words() -> String {
    format!("CPU, {} thread(s), {:?}", cpu::threads(), cpu::Isa::best())
}

#[cfg(not(feature = "gpu"))]
fn no_gpu_feature() -> Error {
    Error::GpuNoAdapter("this build of lmz has no gpu feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_kind_names_round_trip() {
        for k in [BackendKind::Cpu, BackendKind::Gpu, BackendKind::Auto] {
            assert_eq!(k.name().parse::<BackendKind>().ok(), Some(k));
        }
        let e = "cuda".parse::<BackendKind>().err();
        assert!(matches!(e, Some(Error::InvalidArgument(_))), "{e:?}");
    }
}
