//! The device: its limits, the pipelines, the dispatch machinery and the readback.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

#[cfg(doc)]
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::shaders::{self, Binding, Dot4, Kernel};

use super::channel::{lock, oneshot};
use super::kernels::matmul::TILED_FROM;
use super::pool::Pool;

/// Read back (and keep as one buffer) at most this many bytes at once: chunks of logits and
/// frequency tables.
const CHUNK_BYTES: usize = 32 << 20;
/// Submit the pending encoder after this many recorded dispatches.
pub const PASSES_PER_SUBMIT: usize = 128;
/// Workgroup size of the kernels, and the matmuls' tokens per thread: defined with the
/// kernels (`crate::shaders`), where a test ties them to each WGSL file's `const`.
pub(super) use crate::shaders::{TPT, WG};
/// Workgroups per dimension (WebGPU's default `maxComputeWorkgroupsPerDimension`).
pub(super) const MAX_GROUPS: u32 = 65535;
/// The most cached bind groups (the cache is emptied beyond).
const BIND_GROUPS: usize = 1024;

/// How to open the GPU engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// `None`: `dot4I8Packed` when available, else the scalar fallback.
    pub dot4: Option<Dot4>,
}

/// `(x, y)` workgroup counts covering `n` groups with at most [`MAX_GROUPS`] in x.
pub(super) fn grid(n: usize) -> (u32, u32) {
    let n = n.max(1) as u32;
    if n <= MAX_GROUPS {
        (n, 1)
    } else {
        (MAX_GROUPS, n.div_ceil(MAX_GROUPS))
    }
}

pub(super) fn groups(n: usize, per: u32) -> u32 {
    (n as u32).div_ceil(per).max(1)
}

/// A kernel and its override values.
type PipelineKey = (&'static str, Vec<(&'static str, u64)>);

/// A GPU device with the kernels of `shaders/`.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub(super) info: wgpu::AdapterInfo,
    dot4: Dot4,
    pub(super) limits: wgpu::Limits,
    kernels: HashMap<&'static str, (wgpu::BindGroupLayout, wgpu::PipelineLayout, wgpu::ShaderModule)>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
    /// The open compute pass of `encoder` (declared first: dropped first), which holds every
    /// dispatch until a copy or a submit needs the encoder.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    /// Dispatches recorded since the last submit.
    passes: usize,
    pub(super) error: Arc<Mutex<Option<String>>>,
    pub(super) scratch: Option<wgpu::Buffer>,
    pub(super) chunk_bytes: usize,
    pub(super) tiled_from: usize,
    pub(super) pool: Arc<Mutex<Pool>>,
    /// The kernels' parameters of the pending encoder, each at a multiple of `uniform_align`,
    /// written to `uniform` when it is submitted.
    uniform: wgpu::Buffer,
    uniform_data: Vec<u8>,
    uniform_align: usize,
    bind_groups: HashMap<(&'static str, Vec<wgpu::Buffer>), wgpu::BindGroup>,
    /// The last upload of each per-row array (label → contents, buffer).
    uploads: HashMap<&'static str, (Vec<u32>, wgpu::Buffer)>,
}

impl Gpu {
    /// Opens the default adapter (high performance preferred; `WGPU_BACKEND` etc. honoured).
    /// Never blocks: natively use [`Gpu::new`].
    pub async fn new_async(opts: GpuOptions) -> Result<Gpu> {
        // Vulkan, Metal, DX12 or the browser's WebGPU (`WGPU_BACKEND` overrides: e.g. `gl`).
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let instance = wgpu::Instance::new(desc.with_env());
        let packed = instance
            .wgsl_language_features()
            .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::GpuNoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let have = adapter.limits();
        // What the kernels need beyond WebGPU's defaults: nothing but room for the buffers.
        // The largest buffer the engine makes is bounded by CHUNK_BYTES or by the model
        // (the embedding, a KV cache); GpuBackend checks those against these limits.
        let want = wgpu::Limits {
            max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
            max_buffer_size: have.max_buffer_size,
            ..Default::default()
        };
        let min = wgpu::Limits::default();
        if have.max_storage_buffers_per_shader_stage < 8
            || have.max_compute_invocations_per_workgroup < 256
            || have.max_compute_workgroup_size_x < 256
            || have.max_storage_buffer_binding_size < min.max_storage_buffer_binding_size.min(CHUNK_BYTES as u64)
        {
            return Err(Error::GpuLimits {
                adapter: info.name.clone(),
                what: format!(
                    "needs 8 storage buffers per stage (has {}), 256 invocations per workgroup (has {}), storage bindings of {} bytes (has {})",
                    have.max_storage_buffers_per_shader_stage,
                    have.max_compute_invocations_per_workgroup,
                    CHUNK_BYTES,
                    have.max_storage_buffer_binding_size
                ),
            });
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lmz"),
                required_features: wgpu::Features::empty(),
                required_limits: want.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("{}: cannot open the device: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = lock(&sink);
            if s.is_none() {
                *s = Some(e.to_string());
            }
        }));
        let lost = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut s = lock(&lost);
            if s.is_none() {
                *s = Some(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let dot4 = opts.dot4.unwrap_or(if packed { Dot4::Packed } else { Dot4::Scalar });
        if dot4 == Dot4::Packed && !packed {
            return Err(Error::Gpu(format!(
                "{}: the WGSL language feature packed_4x8_integer_dot_product is missing",
                info.name
            )));
        }
        let uniform_align = want.min_uniform_buffer_offset_alignment.max(16) as usize;
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniforms"),
            size: (PASSES_PER_SUBMIT * uniform_align) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            device,
            queue,
            info,
            dot4,
            limits: want,
            kernels: HashMap::new(),
            pipelines: HashMap::new(),
            pass: None,
            encoder: None,
            passes: 0,
            error,
            scratch: None,
            chunk_bytes: CHUNK_BYTES,
            tiled_from: TILED_FROM,
            pool: Arc::default(),
            uniform,
            uniform_data: Vec::new(),
            uniform_align,
            bind_groups: HashMap::new(),
            uploads: HashMap::new(),
        })
    }

    /// [`Gpu::new_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new_async(opts))
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub fn dot4(&self) -> Dot4 {
        self.dot4
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The most bytes of attention scores or of frequency tables handled by one dispatch or
    /// read (default 32 MB; longer batches go in chunks of rows). The bits never depend on
    /// it; the tests make it small to exercise the chunking.
    pub fn set_chunk_bytes(&mut self, bytes: usize) {
        self.chunk_bytes = bytes.max(1);
    }

    /// The batch (activation rows) from which the matmuls run their tiled kernels
    /// (default [`TILED_FROM`]). The bits never depend on it; the tests force either kernel.
    pub fn set_tiled_from(&mut self, rows: usize) {
        self.tiled_from = rows.max(1);
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu, dot4I8Packed)".
    pub fn describe(&self) -> String {
        let i = &self.info;
        let driver = if i.driver_info.is_empty() {
            String::new()
        } else {
            format!(" ({})", i.driver_info)
        };
        format!(
            "{}{driver} ({:?}, {:?}, {})",
            i.name,
            i.backend,
            i.device_type,
            self.dot4.name()
        )
    }

    /// The first captured device error, if any.
    pub(super) fn check(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(Error::Gpu(format!("{}: {e}", self.info.name))),
            None => Ok(()),
        }
    }

    /// A new zeroed storage buffer: what lives long (KV caches, scratch), and the pool's new ones.
    pub(super) fn fresh(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.max(4) as u64).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// [`Gpu::upload`] of a per-row array that the layers of a pass upload again and again
    /// (positions, cache rows): the buffer of the last upload under `label` while the contents
    /// are the same. Such a buffer is never written after its upload.
    pub(super) fn upload_rows(&mut self, label: &'static str, data: &[u32]) -> wgpu::Buffer {
        if let Some((d, b)) = self.uploads.get(label) {
            if d[..] == *data {
                return b.clone();
            }
        }
        let b = self.upload(label, data);
        self.uploads.insert(label, (data.to_vec(), b.clone()));
        b
    }

    pub(super) fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() < 4 {
            let mut padded = bytes.to_vec();
            padded.resize(4, 0);
            return self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            });
        }
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// The pending encoder, its compute pass ended (for copies).
    pub(super) fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        let device = &self.device;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lmz") })
        })
    }

    /// Submits what has been recorded.
    pub fn flush(&mut self) {
        if !self.uniform_data.is_empty() {
            // Ahead of this submit's commands, after every earlier submit's (queue order).
            self.queue.write_buffer(&self.uniform, 0, &self.uniform_data);
            self.uniform_data.clear();
        }
        self.pass = None;
        if let Some(e) = self.encoder.take() {
            self.queue.submit([e.finish()]);
        }
        self.passes = 0;
    }

    fn pipeline(&mut self, k: &'static Kernel, overrides: &[(&'static str, u32)]) -> wgpu::ComputePipeline {
        let key = (
            k.name,
            overrides.iter().map(|&(n, v)| (n, v as u64)).collect::<Vec<_>>(),
        );
        if let Some(p) = self.pipelines.get(&key) {
            return p.clone();
        }
        let dot4 = self.dot4;
        let device = &self.device;
        let (_, layout, module) = self.kernels.entry(k.name).or_insert_with(|| {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = k
                .bindings
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match b {
                            Binding::Uniform => wgpu::BufferBindingType::Uniform,
                            Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                        },
                        // The parameters sit at a dynamic offset in the one uniform buffer.
                        has_dynamic_offset: *b == Binding::Uniform,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(k.path),
                entries: &entries,
            });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(k.path),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            let src = shaders::compose(k, dot4);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.path),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            (bgl, layout, module)
        });
        let constants: Vec<(&str, f64)> = overrides.iter().map(|&(n, v)| (n, v as f64)).collect();
        let p = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.path),
            layout: Some(layout),
            module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: true,
            },
            cache: None,
        });
        self.pipelines.insert(key, p.clone());
        p
    }

    /// Records one dispatch of kernel `k` with its uniform `params` and storage `buffers`
    /// (bindings 1.. in order).
    pub(super) fn dispatch<P: bytemuck::Pod>(
        &mut self,
        k: &'static Kernel,
        overrides: &[(&'static str, u32)],
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) {
        debug_assert_eq!(buffers.len() + 1, k.bindings.len(), "{}", k.path);
        let pipeline = self.pipeline(k, overrides);
        let slot = std::mem::size_of::<P>().next_multiple_of(self.uniform_align);
        if self.uniform_data.len() + slot > self.uniform.size() as usize {
            self.flush(); // the uniform buffer is full (only if a kernel's parameters outgrew a slot)
        }
        let offset = self.uniform_data.len();
        self.uniform_data.extend_from_slice(bytemuck::bytes_of(params));
        self.uniform_data.resize(offset + slot, 0);
        let key = (k.name, buffers.iter().map(|&b| b.clone()).collect::<Vec<_>>());
        let bg = match self.bind_groups.get(&key) {
            Some(bg) => bg.clone(),
            None => {
                let size = std::num::NonZeroU64::new(std::mem::size_of::<P>() as u64);
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.uniform,
                        offset: 0,
                        size,
                    }),
                }];
                entries.extend(buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                }));
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(k.path),
                    layout: &self.kernels[k.name].0,
                    entries: &entries,
                });
                if self.bind_groups.len() >= BIND_GROUPS {
                    self.bind_groups.clear();
                }
                self.bind_groups.insert(key, bg.clone());
                bg
            }
        };
        // Consecutive dispatches share one compute pass: each dispatch is its own usage scope,
        // so wgpu still puts a barrier between a write and a later read.
        if self.pass.is_none() {
            let pass = self
                .encoder()
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("lmz"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        if let Some(pass) = &mut self.pass {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[offset as u32]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        self.passes += 1;
        if self.passes >= PASSES_PER_SUBMIT {
            self.flush();
        }
    }

    // --- readback ---

    /// Copies `len` elements of `src` from element `off` to the host. The returned future
    /// never blocks: it completes when the map callback fires (on wasm, from the event loop;
    /// natively, inside `device.poll`).
    pub fn read_async<T: bytemuck::Pod>(
        &mut self,
        src: &wgpu::Buffer,
        off: usize,
        len: usize,
    ) -> impl Future<Output = Result<Vec<T>>> + 'static {
        let sz = std::mem::size_of::<T>();
        let bytes = ((len * sz) as u64).next_multiple_of(4).max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.encoder()
            .copy_buffer_to_buffer(src, (off * sz) as u64, &staging, 0, bytes);
        self.flush();
        let (tx, rx) = oneshot();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        let name = self.info.name.clone();
        let error = self.error.clone();
        async move {
            let mapped = rx.await;
            if let Some(e) = lock(&error).take() {
                return Err(Error::Gpu(format!("{name}: {e}")));
            }
            match mapped {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(Error::Gpu(format!("{name}: reading back failed: {e}"))),
                None => return Err(Error::Gpu(format!("{name}: reading back failed: the device went away"))),
            }
            let out = {
                let view = staging
                    .get_mapped_range(..)
                    .map_err(|e| Error::Gpu(format!("{name}: {e}")))?;
                bytemuck::cast_slice::<u8, T>(&view[..len * sz]).to_vec()
            };
            staging.unmap();
            Ok(out)
        }
    }

    /// [`Gpu::read_async`], driven to completion (native only: the edge where the sync
    /// [`Backend`] needs the bytes).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read<T: bytemuck::Pod>(&mut self, src: &wgpu::Buffer, off: usize, len: usize) -> Result<Vec<T>> {
        self.check()?;
        let fut = self.read_async::<T>(src, off, len);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("{}: {e}", self.info.name)))?;
        pollster::block_on(fut)
    }
}
