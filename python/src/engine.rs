//! Which engine runs the model: `backend="cpu"|"gpu"|"auto"`. The CLI's rule, line for line
//! (`crate/cli/src/engine.rs`): `auto` is the library's `lmz::backend::gpu::auto` — a hardware
//! adapter runs the model, a software one, none, or one too small or failing leaves it to the
//! CPU. Every engine gives the same bits, so the choice never changes a file.

use lmz::backend::cpu::CpuBackend;
#[cfg(feature = "gpu")]
use lmz::backend::gpu::{self, Auto, Gpu, GpuBackend, GpuOptions};
use lmz::{Error, Model, Result};

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
    pub fn parse(s: &str) -> Result<BackendKind> {
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

/// An engine: the CPU or the GPU one (one per compressor, so the size difference of the
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
            // The library's rule (`lmz::backend::gpu::auto`), the CLI's and the browser's too.
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
            BackendKind::Gpu => Err(Error::GpuNoAdapter(
                "this lmz package was built without the gpu feature".into(),
            )),
            #[cfg(not(feature = "gpu"))]
            BackendKind::Auto => Ok(Engine::Cpu(CpuBackend::with_slots(model, slots, cache_len)?)),
        }
    }

    /// "cpu" or "gpu": what runs.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Cpu(_) => "cpu",
            #[cfg(feature = "gpu")]
            Engine::Gpu(_) => "gpu",
        }
    }

    /// For reports: "CPU, 2 thread(s), Avx512Vnni" (called on the compressor's pool) or
    /// "GPU NVIDIA H100 … (Vulkan, DiscreteGpu, dot4I8Packed)".
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(_) => format!(
                "CPU, {} thread(s), {:?}",
                rayon::current_num_threads(),
                lmz::backend::cpu::Isa::best()
            ),
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
