//! The GPU engine: wgpu compute on the WGSL kernels of `shaders/`, bit-identical to the CPU.
//!
//! [`Gpu`] is a device with the kernels: one method per kernel of `shaders/` (the twin of the
//! [`cpu`] function of the same name), on typed GPU buffers. [`GpuBackend`] holds the model's
//! weights, uploaded once, and the KV cache, both on the GPU, and implements [`Backend`], so
//! [`crate::model::forward`] runs on it unchanged. Only frequency tables come back to the host.
//!
//! **Layout** (chosen at upload): Q4 nibbles stay packed as in the pack (4 bytes per `u32`);
//! a Q4 block's `d` and `m` share one word (`d | m << 16`); Q8 quants 4 per word; int8
//! activations 4 per word with each block's mantissa and sum in one word (`a | X << 16`);
//! keys and values of the KV cache as `i16` pairs. Everything else is `i32`/`u32` per value.
//!
//! **Scheduling**: every kernel call records one dispatch into the open compute pass of a
//! pending command encoder (a buffer copy ends the pass; the next dispatch opens another); the
//! encoder is submitted when something is read back (or every [`PASSES_PER_SUBMIT`]
//! dispatches). Each dispatch is its own usage scope, so wgpu orders them and inserts the
//! barriers, and the host never waits inside a forward pass.
//!
//! **What a pass costs the host** (a forward pass records ~600 dispatches, 20 per layer; a
//! fast GPU runs a decoding step's in well under a millisecond, so the host's share decides
//! the speed): the kernels' parameters go into one uniform buffer per submit at dynamic
//! offsets (not a buffer per dispatch); activation buffers come from a pool by size class and
//! go back to it when their last handle drops (not an allocation per operation: wgpu's
//! sub-allocator was 21 % of a decoding profile); bind groups are cached by their buffers,
//! which the pool makes recur from one pass to the next; the per-row arrays that every layer
//! uploads again (positions, cache rows) are uploaded once while they are unchanged; and
//! consecutive dispatches share one compute pass.
//!
//! **Readback**: [`Gpu::read_async`] copies into a staging buffer, calls `map_async` and
//! returns a future fed by the map callback through a one-shot channel; it never blocks, so a
//! wasm build can await it. The blocking wrapper ([`Gpu::read`]: `device.poll(wait)` then
//! `pollster::block_on`) exists only natively, at the edge where the sync [`Backend`] calls it.
//!
//! **Errors**: no adapter → [`Error::GpuNoAdapter`]; an adapter whose limits are too small →
//! [`Error::GpuLimits`]; any wgpu validation or device error is captured (never a panic) and
//! returned as [`Error::Gpu`] by the next read.
//!
//! **dot4**: the matmul kernels are composed with `dot4I8Packed` when the instance reports
//! the `packed_4x8_integer_dot_product` WGSL language feature (native wgpu always does; a
//! browser may not), else with the exact scalar fallback; [`GpuOptions::dot4`] can force one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;
pub use wgpu::{AdapterInfo, DeviceType};

use crate::backend::cpu::{self, KvCache, QAct};
use crate::backend::{Backend, Mat, Norm};
use crate::error::{Error, Result};
use crate::pack::{Config, Model, NormWeight, Q4Matrix, Q8Matrix, Tables};
use crate::shaders::{self, Binding, Dot4, Kernel};

/// Read back (and keep as one buffer) at most this many bytes at once: chunks of logits and
/// frequency tables.
const CHUNK_BYTES: usize = 32 << 20;
/// Submit the pending encoder after this many recorded dispatches.
pub const PASSES_PER_SUBMIT: usize = 128;
/// Workgroup size of the kernels (their `const WG`), and the matmuls' tokens per thread.
const WG: u32 = 64;
const TPT: u32 = 4;
/// The tiled matmuls' tile (`TR` rows × `TT` tokens of `shaders/matmul_q*_tiled.wgsl`), and
/// the batch from which the engine runs them instead of the one-row-per-invocation kernels.
const TILE_ROWS: u32 = 64;
const TILE_TOKENS: u32 = 16;
pub const TILED_FROM: usize = 16;
/// Workgroups per dimension (WebGPU's default `maxComputeWorkgroupsPerDimension`).
const MAX_GROUPS: u32 = 65535;

/// How to open the GPU engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// `None`: `dot4I8Packed` when available, else the scalar fallback.
    pub dot4: Option<Dot4>,
}

// --- a one-shot channel for map_async (no executor, no blocking) ---

struct Shared<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

struct Sender<T>(Arc<Mutex<Shared<T>>>);
struct Receiver<T>(Arc<Mutex<Shared<T>>>);

fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Shared { value: None, closed: false, waker: None }));
    (Sender(s.clone()), Receiver(s))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data (an
    // Option) is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Sender<T> {
    fn send(self, v: T) {
        lock(&self.0).value = Some(v);
        // Drop wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    /// `None` when the sender was dropped without sending (the device was lost).
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = lock(&self.0);
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

// --- the buffer pool ---

/// The most bytes of free buffers the pool keeps (more are released).
const POOL_BYTES: u64 = 64 << 20;
/// The most cached bind groups (the cache is emptied beyond).
const BIND_GROUPS: usize = 1024;

/// Free storage buffers by size.
#[derive(Debug, Default)]
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// The size a request of `bytes` is rounded up to: a multiple of 256 up to 4 KB, then of a
/// sixteenth of its power of two (at most 1/16 more), so that batches of different lengths
/// share buffers. The kernels bound their loops by their parameters, never by a buffer's length.
fn size_class(bytes: usize) -> u64 {
    let b = (bytes.max(4) as u64).next_multiple_of(4);
    if b <= 4096 {
        b.next_multiple_of(256)
    } else {
        b.next_multiple_of((1u64 << (63 - b.leading_zeros())) / 16)
    }
}

#[derive(Debug)]
struct Pooled {
    buf: wgpu::Buffer,
    /// Where it goes back when dropped; none for a buffer that is not pooled.
    pool: std::sync::Weak<Mutex<Pool>>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(p) = self.pool.upgrade() {
            let mut p = lock(&p);
            let size = self.buf.size();
            if p.bytes + size <= POOL_BYTES {
                p.bytes += size;
                p.free.entry(size).or_default().push(self.buf.clone());
            }
        }
    }
}

/// A storage buffer of the engine: from the pool (back in it when the last handle drops,
/// after which only later-recorded commands use it again: wgpu orders them after every
/// earlier use), or a plain one.
#[derive(Debug, Clone)]
pub struct Buf(Arc<Pooled>);

impl Buf {
    fn plain(buf: wgpu::Buffer) -> Buf {
        Buf(Arc::new(Pooled { buf, pool: std::sync::Weak::new() }))
    }
}

impl std::ops::Deref for Buf {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.0.buf
    }
}

// --- typed GPU buffers ---

/// An `i32` activation matrix `[rows, width]` on the GPU.
#[derive(Debug, Clone)]
pub struct GpuBuf {
    buf: Buf,
    pub rows: usize,
    pub width: usize,
    /// Logits are not materialised (a 2048-row window of 49,152 logits is 400 MB): the
    /// engine keeps the quantised final activations and makes the logits a chunk of rows
    /// at a time in [`Backend::freqs`].
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // read by the native freqs only
    deferred_logits: Option<GpuQ>,
}

/// int8 block-quantised activations on the GPU (see [`QAct`]).
#[derive(Debug, Clone)]
pub struct GpuQ {
    /// `[rows, width/4]`, 4 × i8 per word
    q: Buf,
    /// `[rows, width/32]`, `a | sum << 16`
    scale_sum: Buf,
    /// `[rows]`
    exp: Buf,
    pub rows: usize,
    pub width: usize,
}

/// A Q4_1 matrix on the GPU, transposed so that neighbouring invocations (rows) read
/// neighbouring words.
#[derive(Debug)]
pub struct GpuQ4 {
    /// `[cols/8, rows]`, the pack's nibble bytes, 4 per word
    nib: wgpu::Buffer,
    /// `[cols/32, rows]`, `d | m << 16`
    dm: wgpu::Buffer,
    /// `[rows]`
    e: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
}

/// A Q8_0 matrix on the GPU (the token embedding, also the tied output projection),
/// transposed so that neighbouring invocations (rows) read neighbouring words.
#[derive(Debug)]
pub struct GpuQ8 {
    /// `[cols/4, rows]`, 4 × i8 per word
    q: wgpu::Buffer,
    /// `[cols/32, rows]`
    d: wgpu::Buffer,
    /// `[rows]`
    e: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
}

/// An RMSNorm gain on the GPU.
#[derive(Debug)]
pub struct GpuNorm {
    /// `[dim]`
    g: wgpu::Buffer,
    pub g_exp: i32,
    pub z_frac: i32,
}

/// The lookup tables on the GPU.
#[derive(Debug)]
pub struct GpuTables {
    /// `[ctx, head_dim/2]` each, as i32
    rope_cos: wgpu::Buffer,
    rope_sin: wgpu::Buffer,
    /// `[256]`
    att_exp: wgpu::Buffer,
    /// `[1024]`
    out_exp: wgpu::Buffer,
    /// `[2049]`
    silu: wgpu::Buffer,
    silu_centre: i32,
    /// Positions the RoPE tables cover.
    pub ctx: usize,
}

/// One layer's KV cache on the GPU: `rows` = slots · cache_len.
#[derive(Debug)]
pub struct GpuKv {
    /// `[rows, n_kv·head_dim/2]` i16 pairs
    k: wgpu::Buffer,
    /// `[rows, n_kv]`
    kexp: wgpu::Buffer,
    /// `[rows, n_kv·head_dim/2]` i16 pairs
    v: wgpu::Buffer,
    pub rows: usize,
    pub n_kv: usize,
    pub head_dim: usize,
}

fn words_i8(v: &[i8]) -> Vec<u32> {
    v.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (k, &b)| w | ((b as u8 as u32) << (8 * k)))).collect()
}

fn words_u8(v: &[u8]) -> Vec<u32> {
    v.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (k, &b)| w | ((b as u32) << (8 * k)))).collect()
}

/// `[rows, n]` → `[n, rows]`.
fn transpose<T: Copy>(v: &[T], rows: usize) -> Vec<T> {
    let n = v.len() / rows.max(1);
    (0..v.len()).map(|i| v[(i % rows) * n + i / rows]).collect()
}

fn pairs_i16(v: &[i16]) -> Vec<u32> {
    v.chunks(2).map(|c| (c[0] as u16 as u32) | ((c.get(1).copied().unwrap_or(0) as u16 as u32) << 16)).collect()
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))] // used by the native read_kv
fn unpairs_i16(w: &[u32], n: usize) -> Vec<i16> {
    w.iter().flat_map(|&x| [x as u16 as i16, (x >> 16) as u16 as i16]).take(n).collect()
}

/// `(x, y)` workgroup counts covering `n` groups with at most [`MAX_GROUPS`] in x.
fn grid(n: usize) -> (u32, u32) {
    let n = n.max(1) as u32;
    if n <= MAX_GROUPS {
        (n, 1)
    } else {
        (MAX_GROUPS, n.div_ceil(MAX_GROUPS))
    }
}

fn groups(n: usize, per: u32) -> u32 {
    (n as u32).div_ceil(per).max(1)
}

// --- the device and the kernels ---

/// A kernel and its override values.
type PipelineKey = (&'static str, Vec<(&'static str, u64)>);

/// A GPU device with the kernels of `shaders/`.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    dot4: Dot4,
    limits: wgpu::Limits,
    kernels: HashMap<&'static str, (wgpu::BindGroupLayout, wgpu::PipelineLayout, wgpu::ShaderModule)>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
    /// The open compute pass of `encoder` (declared first: dropped first), which holds every
    /// dispatch until a copy or a submit needs the encoder.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    /// Dispatches recorded since the last submit.
    passes: usize,
    error: Arc<Mutex<Option<String>>>,
    scratch: Option<wgpu::Buffer>,
    chunk_bytes: usize,
    tiled_from: usize,
    pool: Arc<Mutex<Pool>>,
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
        let packed = instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|e| Error::GpuNoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let have = adapter.limits();
        // What the kernels need beyond WebGPU's defaults: nothing but room for the buffers.
        // The largest buffer the engine makes is bounded by CHUNK_BYTES or by the model
        // (the embedding, a KV cache); GpuBackend checks those against these limits.
        let want = wgpu::Limits { max_storage_buffer_binding_size: have.max_storage_buffer_binding_size, max_buffer_size: have.max_buffer_size, ..Default::default() };
        let min = wgpu::Limits::default();
        if have.max_storage_buffers_per_shader_stage < 8 || have.max_compute_invocations_per_workgroup < 256 || have.max_compute_workgroup_size_x < 256 || have.max_storage_buffer_binding_size < min.max_storage_buffer_binding_size.min(CHUNK_BYTES as u64) {
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
            .request_device(&wgpu::DeviceDescriptor { label: Some("lmz"), required_features: wgpu::Features::empty(), required_limits: want.clone(), ..Default::default() })
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
            return Err(Error::Gpu(format!("{}: the WGSL language feature packed_4x8_integer_dot_product is missing", info.name)));
        }
        let uniform_align = want.min_uniform_buffer_offset_alignment.max(16) as usize;
        let uniform = device.create_buffer(&wgpu::BufferDescriptor { label: Some("uniforms"), size: (PASSES_PER_SUBMIT * uniform_align) as u64, usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
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
        let driver = if i.driver_info.is_empty() { String::new() } else { format!(" ({})", i.driver_info) };
        format!("{}{driver} ({:?}, {:?}, {})", i.name, i.backend, i.device_type, self.dot4.name())
    }

    /// The first captured device error, if any.
    fn check(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(Error::Gpu(format!("{}: {e}", self.info.name))),
            None => Ok(()),
        }
    }

    /// A new zeroed storage buffer: what lives long (KV caches, scratch), and the pool's new ones.
    fn fresh(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.max(4) as u64).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer of at least `bytes` from the pool, for a kernel's output (its contents
    /// are whatever was there: every kernel writes all of its output).
    fn buffer(&self, label: &str, bytes: usize) -> Buf {
        let size = size_class(bytes);
        let reused = {
            let mut p = lock(&self.pool);
            let b = p.free.get_mut(&size).and_then(Vec::pop);
            if b.is_some() {
                p.bytes -= size;
            }
            b
        };
        let buf = reused.unwrap_or_else(|| self.fresh(label, size as usize));
        Buf(Arc::new(Pooled { buf, pool: Arc::downgrade(&self.pool) }))
    }

    /// [`Gpu::upload`] of a per-row array that the layers of a pass upload again and again
    /// (positions, cache rows): the buffer of the last upload under `label` while the contents
    /// are the same. Such a buffer is never written after its upload.
    fn upload_rows(&mut self, label: &'static str, data: &[u32]) -> wgpu::Buffer {
        if let Some((d, b)) = self.uploads.get(label) {
            if d[..] == *data {
                return b.clone();
            }
        }
        let b = self.upload(label, data);
        self.uploads.insert(label, (data.to_vec(), b.clone()));
        b
    }

    fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() < 4 {
            let mut padded = bytes.to_vec();
            padded.resize(4, 0);
            return self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: &padded, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST });
        }
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST })
    }

    /// The pending encoder, its compute pass ended (for copies).
    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        let device = &self.device;
        self.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lmz") }))
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
        let key = (k.name, overrides.iter().map(|&(n, v)| (n, v as u64)).collect::<Vec<_>>());
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
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(k.path), entries: &entries });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(k.path), bind_group_layouts: &[Some(&bgl)], immediate_size: 0 });
            let src = shaders::compose(k, dot4);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(k.path), source: wgpu::ShaderSource::Wgsl(src.into()) });
            (bgl, layout, module)
        });
        let constants: Vec<(&str, f64)> = overrides.iter().map(|&(n, v)| (n, v as f64)).collect();
        let p = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.path),
            layout: Some(layout),
            module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, zero_initialize_workgroup_memory: true },
            cache: None,
        });
        self.pipelines.insert(key, p.clone());
        p
    }

    /// Records one dispatch of kernel `k` with its uniform `params` and storage `buffers`
    /// (bindings 1.. in order).
    fn dispatch<P: bytemuck::Pod>(&mut self, k: &'static Kernel, overrides: &[(&'static str, u32)], params: &P, buffers: &[&wgpu::Buffer], groups: (u32, u32)) {
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
                let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.uniform, offset: 0, size }) }];
                entries.extend(buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }));
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(k.path), layout: &self.kernels[k.name].0, entries: &entries });
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
            let pass = self.encoder().begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("lmz"), timestamp_writes: None }).forget_lifetime();
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
    pub fn read_async<T: bytemuck::Pod>(&mut self, src: &wgpu::Buffer, off: usize, len: usize) -> impl Future<Output = Result<Vec<T>>> + 'static {
        let sz = std::mem::size_of::<T>();
        let bytes = ((len * sz) as u64).next_multiple_of(4).max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some("readback"), size: bytes, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        self.encoder().copy_buffer_to_buffer(src, (off * sz) as u64, &staging, 0, bytes);
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
                let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("{name}: {e}")))?;
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
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("{}: {e}", self.info.name)))?;
        pollster::block_on(fut)
    }

    // --- uploads and downloads of typed buffers ---

    pub fn upload_buf(&self, data: &[i32], width: usize) -> GpuBuf {
        GpuBuf { buf: Buf::plain(self.upload("activations", data)), rows: data.len() / width.max(1), width, deferred_logits: None }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_buf(&mut self, x: &GpuBuf) -> Result<Vec<i32>> {
        self.read(&x.buf.clone(), 0, x.rows * x.width)
    }

    pub fn upload_q(&self, a: &QAct) -> GpuQ {
        let meta: Vec<u32> = a.a.iter().zip(&a.sum).map(|(&m, &s)| m as u32 | ((s as u32) << 16)).collect();
        GpuQ { q: Buf::plain(self.upload("act.q", &words_i8(&a.q))), scale_sum: Buf::plain(self.upload("act.scale_sum", &meta)), exp: Buf::plain(self.upload("act.exp", &a.exp)), rows: a.tokens, width: a.width }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_q(&mut self, a: &GpuQ) -> Result<QAct> {
        let nb = a.width / 32;
        let words: Vec<u32> = self.read(&a.q.clone(), 0, a.rows * a.width / 4)?;
        let meta: Vec<u32> = self.read(&a.scale_sum.clone(), 0, a.rows * nb)?;
        let exp: Vec<i32> = self.read(&a.exp.clone(), 0, a.rows)?;
        Ok(QAct {
            tokens: a.rows,
            width: a.width,
            q: words.iter().flat_map(|w| w.to_le_bytes().map(|b| b as i8)).collect(),
            a: meta.iter().map(|&m| (m & 0xFFFF) as u16).collect(),
            sum: meta.iter().map(|&m| (m as i32) >> 16).collect(),
            exp,
        })
    }

    pub fn upload_q4(&self, w: &Q4Matrix) -> GpuQ4 {
        let dm: Vec<u32> = w.d.iter().zip(&w.m).map(|(&d, &m)| d as u16 as u32 | ((m as u16 as u32) << 16)).collect();
        let e: Vec<i32> = w.e.iter().map(|&e| e as i32).collect();
        let nib = transpose(&words_u8(&w.nib), w.rows);
        GpuQ4 { nib: self.upload("q4.nib", &nib), dm: self.upload("q4.dm", &transpose(&dm, w.rows)), e: self.upload("q4.e", &e), rows: w.rows, cols: w.cols }
    }

    /// Transposed (`[cols/4, rows]` words, `[cols/32, rows]` scales) for `matmul_q8`; `embed`
    /// reads the same layout.
    pub fn upload_q8(&self, w: &Q8Matrix) -> GpuQ8 {
        let d: Vec<i32> = w.d.iter().map(|&d| d as i32).collect();
        let e: Vec<i32> = w.e.iter().map(|&e| e as i32).collect();
        GpuQ8 { q: self.upload("q8.q", &transpose(&words_i8(&w.q), w.rows)), d: self.upload("q8.d", &transpose(&d, w.rows)), e: self.upload("q8.e", &e), rows: w.rows, cols: w.cols }
    }

    pub fn upload_norm(&self, g: &NormWeight) -> GpuNorm {
        GpuNorm { g: self.upload("norm.g", &g.g), g_exp: g.g_exp, z_frac: g.z_frac }
    }

    pub fn upload_tables(&self, t: &Tables, head_dim: usize) -> GpuTables {
        let cos: Vec<i32> = t.rope_cos.iter().map(|&v| v as i32).collect();
        let sin: Vec<i32> = t.rope_sin.iter().map(|&v| v as i32).collect();
        GpuTables {
            rope_cos: self.upload("tab.rope_cos", &cos),
            rope_sin: self.upload("tab.rope_sin", &sin),
            att_exp: self.upload("tab.att_exp", &t.att_exp),
            out_exp: self.upload("tab.out_exp", &t.out_exp),
            silu: self.upload("tab.silu", &t.silu),
            silu_centre: (t.silu.len() / 2) as i32,
            ctx: t.rope_cos.len() / (head_dim / 2).max(1),
        }
    }

    /// An empty (zeroed) KV cache of `rows` positions.
    pub fn new_kv(&self, rows: usize, n_kv: usize, head_dim: usize) -> GpuKv {
        let kvd = n_kv * head_dim;
        GpuKv { k: self.fresh("kv.k", rows * kvd * 2), kexp: self.fresh("kv.kexp", rows * n_kv * 4), v: self.fresh("kv.v", rows * kvd * 2), rows, n_kv, head_dim }
    }

    pub fn upload_kv(&self, c: &KvCache, n_kv: usize, head_dim: usize) -> GpuKv {
        GpuKv { k: self.upload("kv.k", &pairs_i16(&c.k)), kexp: self.upload("kv.kexp", &c.k_exp), v: self.upload("kv.v", &pairs_i16(&c.v)), rows: c.k_exp.len() / n_kv, n_kv, head_dim }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_kv(&mut self, c: &GpuKv) -> Result<KvCache> {
        let n = c.rows * c.n_kv * c.head_dim;
        let k: Vec<u32> = self.read(&c.k.clone(), 0, n / 2)?;
        let v: Vec<u32> = self.read(&c.v.clone(), 0, n / 2)?;
        Ok(KvCache { k: unpairs_i16(&k, n), k_exp: self.read(&c.kexp.clone(), 0, c.rows * c.n_kv)?, v: unpairs_i16(&v, n) })
    }

    // --- the kernels (each the twin of the cpu function of the same name) ---

    /// `shaders/quantize.wgsl` ↔ [`cpu::quantize`].
    pub fn quantize(&mut self, z: &GpuBuf, frac: i32) -> GpuQ {
        let (rows, width) = (z.rows, z.width);
        let out = GpuQ { q: self.buffer("act.q", rows * width), scale_sum: self.buffer("act.scale_sum", rows * width / 32 * 4), exp: self.buffer("act.exp", rows * 4), rows, width };
        let p = shaders::QuantizeParams { rows: rows as u32, width: width as u32, frac, _pad: 0 };
        self.dispatch(&shaders::QUANTIZE, &[], &p, &[&z.buf, &out.q, &out.scale_sum, &out.exp], grid(rows));
        out
    }

    /// The matmul kernel for `tokens` rows of activations against `rows` weight rows, and its
    /// workgroups: the tiled one from [`Gpu::set_tiled_from`] rows on, else one invocation per
    /// row and 4 tokens.
    fn matmul_kernel(&self, per_row: &'static Kernel, tiled: &'static Kernel, rows: usize, tokens: usize) -> (&'static Kernel, (u32, u32)) {
        if tokens >= self.tiled_from {
            (tiled, (groups(rows, TILE_ROWS), groups(tokens, TILE_TOKENS)))
        } else {
            (per_row, (groups(rows, WG), groups(tokens, TPT)))
        }
    }

    /// `shaders/matmul_q4.wgsl` ↔ [`cpu::matmul_q4`].
    pub fn matmul_q4(&mut self, w: &GpuQ4, a: &GpuQ, frac_out: i32) -> GpuBuf {
        let out = GpuBuf { buf: self.buffer("matmul_q4.out", a.rows * w.rows * 4), rows: a.rows, width: w.rows, deferred_logits: None };
        let p = shaders::MatmulParams { rows: w.rows as u32, tokens: a.rows as u32, frac_out, tok0: 0 };
        let (k, g) = self.matmul_kernel(&shaders::MATMUL_Q4, &shaders::MATMUL_Q4_TILED, w.rows, a.rows);
        self.dispatch(k, &[("NB", (w.cols / 32) as u32)], &p, &[&w.nib, &w.dm, &w.e, &a.q, &a.scale_sum, &a.exp, &out.buf], g);
        out
    }

    /// `shaders/matmul_q8.wgsl` ↔ [`cpu::matmul_q8`], for activation rows `tok0..tok0+n`.
    pub fn matmul_q8(&mut self, w: &GpuQ8, a: &GpuQ, frac_out: i32, tok0: usize, n: usize) -> GpuBuf {
        let out = GpuBuf { buf: self.buffer("matmul_q8.out", n * w.rows * 4), rows: n, width: w.rows, deferred_logits: None };
        let p = shaders::MatmulParams { rows: w.rows as u32, tokens: n as u32, frac_out, tok0: tok0 as u32 };
        let (k, g) = self.matmul_kernel(&shaders::MATMUL_Q8, &shaders::MATMUL_Q8_TILED, w.rows, n);
        self.dispatch(k, &[("NB", (w.cols / 32) as u32)], &p, &[&w.q, &w.d, &w.e, &a.q, &a.scale_sum, &a.exp, &out.buf], g);
        out
    }

    /// `shaders/embed.wgsl` ↔ [`cpu::embed`] (same error for a token outside the vocabulary).
    pub fn embed(&mut self, w: &GpuQ8, tokens: &[u32]) -> Result<GpuBuf> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= w.rows) {
            return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary of {}", w.rows)));
        }
        let ids = self.upload("tokens", tokens);
        let out = GpuBuf { buf: self.buffer("embed.out", tokens.len() * w.cols * 4), rows: tokens.len(), width: w.cols, deferred_logits: None };
        let p = shaders::EmbedParams { rows: tokens.len() as u32, dim: w.cols as u32, vocab: w.rows as u32, _pad: 0 };
        self.dispatch(&shaders::EMBED, &[], &p, &[&ids, &w.q, &w.d, &w.e, &out.buf], (groups(w.cols, WG), tokens.len().max(1) as u32));
        Ok(out)
    }

    /// `shaders/rmsnorm.wgsl` ↔ [`cpu::rmsnorm_row`] on every row.
    pub fn rmsnorm(&mut self, x: &GpuBuf, g: &GpuNorm, eps_q24: u32) -> GpuBuf {
        let out = GpuBuf { buf: self.buffer("rmsnorm.out", x.rows * x.width * 4), rows: x.rows, width: x.width, deferred_logits: None };
        let p = shaders::RmsnormParams { rows: x.rows as u32, dim: x.width as u32, eps_q24, g_exp: g.g_exp, z_frac: g.z_frac, ..Default::default() };
        self.dispatch(&shaders::RMSNORM, &[], &p, &[&x.buf, &g.g, &out.buf], grid(x.rows));
        out
    }

    /// `shaders/rope.wgsl` ↔ [`cpu::rope_row`] on every row, row `r` at position `pos[r]`.
    pub fn rope(&mut self, x: &GpuBuf, head_dim: usize, pos: &[u32], t: &GpuTables) {
        let pos_buf = self.upload_rows("rope.pos", pos);
        let p = shaders::RopeParams { rows: x.rows as u32, width: x.width as u32, ..Default::default() };
        self.dispatch(&shaders::ROPE, &[("HEAD_DIM", head_dim as u32)], &p, &[&x.buf, &pos_buf, &t.rope_cos, &t.rope_sin], (groups(x.width / 2, WG), x.rows.max(1) as u32));
    }

    /// `shaders/silu_mul.wgsl` ↔ [`cpu::silu_mul`].
    pub fn silu_mul(&mut self, gate: &GpuBuf, up: &GpuBuf, t: &GpuTables) -> GpuBuf {
        let n = gate.rows * gate.width;
        let out = GpuBuf { buf: self.buffer("silu_mul.out", n * 4), rows: gate.rows, width: gate.width, deferred_logits: None };
        let p = shaders::ElementwiseParams { n: n as u32, ..Default::default() };
        self.dispatch(&shaders::SILU_MUL, &[("CENTRE", t.silu_centre as u32)], &p, &[&gate.buf, &up.buf, &t.silu, &out.buf], grid(groups(n, WG) as usize));
        out
    }

    /// `shaders/add.wgsl` ↔ `x += y` saturating ([`CpuBackend::add`](cpu::CpuBackend)).
    pub fn add(&mut self, x: &GpuBuf, y: &GpuBuf) {
        let n = x.rows * x.width;
        let p = shaders::ElementwiseParams { n: n as u32, ..Default::default() };
        self.dispatch(&shaders::ADD, &[], &p, &[&x.buf, &y.buf], grid(groups(n, WG) as usize));
    }

    /// `shaders/kv_store.wgsl` ↔ [`cpu::kv_store`]: row `r` of `k`, `v` into cache row `dst[r]`.
    pub fn kv_store(&mut self, c: &GpuKv, k: &GpuBuf, v: &GpuBuf, dst: &[u32]) {
        let dst_buf = self.upload_rows("kv_store.dst", dst);
        let p = shaders::KvStoreParams { rows: k.rows as u32, cache_rows: c.rows as u32, ..Default::default() };
        let ov = [("HEAD_DIM", c.head_dim as u32), ("N_KV", c.n_kv as u32)];
        self.dispatch(&shaders::KV_STORE, &ov, &p, &[&k.buf, &v.buf, &dst_buf, &c.k, &c.kexp, &c.v], (groups(c.n_kv, WG), k.rows.max(1) as u32));
    }

    /// `shaders/kv_shift.wgsl` ↔ [`cpu::kv_shift`]: cache rows `src..src + n` to
    /// `dst..dst + n` (`dst ≤ src`), keys re-rotated by `src − dst` positions, through
    /// `scratch` (a cache of at least `n` rows), since the two ranges may overlap.
    pub fn kv_shift(&mut self, c: &GpuKv, scratch: &GpuKv, src: usize, dst: usize, n: usize, t: &GpuTables) {
        if n == 0 {
            return;
        }
        let p = shaders::KvShiftParams { rows: n as u32, src: src as u32, cache_rows: c.rows as u32, delta: (src - dst) as u32 };
        let ov = [("HEAD_DIM", c.head_dim as u32), ("N_KV", c.n_kv as u32)];
        self.dispatch(&shaders::KV_SHIFT, &ov, &p, &[&c.k, &c.kexp, &c.v, &t.rope_cos, &t.rope_sin, &scratch.k, &scratch.kexp, &scratch.v], (groups(c.n_kv, WG), n as u32));
        let (kv, e) = ((c.n_kv * c.head_dim * 2) as u64, (c.n_kv * 4) as u64);
        let enc = self.encoder();
        enc.copy_buffer_to_buffer(&scratch.k, 0, &c.k, dst as u64 * kv, n as u64 * kv);
        enc.copy_buffer_to_buffer(&scratch.kexp, 0, &c.kexp, dst as u64 * e, n as u64 * e);
        enc.copy_buffer_to_buffer(&scratch.v, 0, &c.v, dst as u64 * kv, n as u64 * kv);
    }

    /// `shaders/attention.wgsl` ↔ [`cpu::attention_row`] on every row: row `r` attends over
    /// positions `0..=pos[r]` of sequence `slot[r]` (cache rows `slot·cache_len + j`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(&mut self, q: &GpuBuf, c: &GpuKv, slot: &[u32], pos: &[u32], cache_len: usize, n_heads: usize, t: &GpuTables) -> Result<GpuBuf> {
        if c.head_dim > 256 || !c.head_dim.is_multiple_of(2) || !n_heads.is_multiple_of(c.n_kv) {
            return Err(Error::InvalidArgument(format!("attention: head_dim {} (even, ≤ 256), {n_heads} heads over {} kv heads", c.head_dim, c.n_kv)));
        }
        let rows = q.rows;
        let info: Vec<u32> = pos.iter().zip(slot).flat_map(|(&p, &s)| [p, s]).collect();
        let info_buf = self.upload_rows("attention.rowinfo", &info);
        let out = GpuBuf { buf: self.buffer("attention.out", rows * q.width * 4), rows, width: q.width, deferred_logits: None };
        // Scores of up to `chunk` rows at once: [chunk, heads, cache_len] u32 ≤ CHUNK_BYTES.
        let per_row = n_heads * cache_len * 4;
        let chunk = (self.chunk_bytes / per_row).clamp(1, MAX_GROUPS as usize).min(rows.max(1));
        let need = (chunk * per_row) as u64;
        if need > self.limits.max_storage_buffer_binding_size {
            return Err(Error::GpuLimits { adapter: self.info.name.clone(), what: format!("attention scores need a {need}-byte buffer") });
        }
        let scratch = match &self.scratch {
            Some(s) if s.size() >= need => s.clone(),
            _ => {
                let s = self.fresh("attention.scratch", need as usize);
                self.scratch = Some(s.clone());
                s
            }
        };
        let ov = [("HEAD_DIM", c.head_dim as u32), ("N_HEADS", n_heads as u32), ("N_KV", c.n_kv as u32)];
        let mut row0 = 0;
        while row0 < rows {
            let n = chunk.min(rows - row0);
            let p = shaders::AttentionParams { rows: rows as u32, row0: row0 as u32, cache_len: cache_len as u32, _pad: 0 };
            self.dispatch(&shaders::ATTENTION, &ov, &p, &[&q.buf, &info_buf, &c.k, &c.kexp, &c.v, &t.att_exp, &scratch, &out.buf], (n_heads as u32, n as u32));
            row0 += n;
        }
        Ok(out)
    }

    /// `shaders/freq.wgsl` ↔ [`crate::freq::freq_table`] on every row: `[rows, vocab]` u32.
    pub fn freq(&mut self, logits: &GpuBuf, t: &GpuTables) -> Buf {
        let out = self.buffer("freq.out", logits.rows * logits.width * 4);
        let p = shaders::FreqParams { rows: logits.rows as u32, vocab: logits.width as u32, ..Default::default() };
        self.dispatch(&shaders::FREQ, &[], &p, &[&logits.buf, &t.out_exp, &out], grid(logits.rows));
        out
    }

    /// `shaders/ranges.wgsl` ↔ [`crate::coder::cum_freq`]: `(cum, freq)` of `symbols[r]` in
    /// row `r` of the tables `freq` (`[rows, vocab]`, made by [`Gpu::freq`]), `[rows, 2]`
    /// words. Each symbol must be below `vocab` (the kernel clamps, the engine checks).
    pub fn ranges(&mut self, freq: &wgpu::Buffer, rows: usize, vocab: usize, symbols: &[u32]) -> Buf {
        let sym = self.upload("ranges.symbols", symbols);
        let out = self.buffer("ranges.out", rows * 2 * 4);
        let p = shaders::FreqParams { rows: rows as u32, vocab: vocab as u32, ..Default::default() };
        self.dispatch(&shaders::RANGES, &[], &p, &[freq, &sym, &out], grid(rows));
        out
    }

    /// Frequency tables of `logits`, read back ([`Gpu::freq`] then a read).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_freq(&mut self, logits: &GpuBuf, t: &GpuTables) -> Result<Vec<u32>> {
        let f = self.freq(logits, t);
        self.read(&f, 0, logits.rows * logits.width)
    }

    /// The rows `idx` of `x`, in that order (buffer copies, runs of consecutive rows merged).
    pub fn rows(&mut self, x: &GpuBuf, idx: &[u32]) -> GpuBuf {
        let w = x.width as u64 * 4;
        let out = GpuBuf { buf: self.buffer("rows.out", idx.len() * x.width * 4), rows: idx.len(), width: x.width, deferred_logits: None };
        let mut i = 0;
        while i < idx.len() {
            let mut j = i + 1;
            while j < idx.len() && idx[j] == idx[j - 1] + 1 {
                j += 1;
            }
            let (src, buf) = (x.buf.clone(), out.buf.clone());
            self.encoder().copy_buffer_to_buffer(&src, idx[i] as u64 * w, &buf, i as u64 * w, (j - i) as u64 * w);
            i = j;
        }
        out
    }
}

// --- the engine ---

struct GpuLayer {
    attn_norm: GpuNorm,
    wq: GpuQ4,
    wk: GpuQ4,
    wv: GpuQ4,
    wo: GpuQ4,
    ffn_norm: GpuNorm,
    w_gate: GpuQ4,
    w_up: GpuQ4,
    w_down: GpuQ4,
}

/// The GPU engine: the model's weights uploaded once, a KV cache of `slots` sequences of
/// `cache_len` positions per layer on the GPU; only frequency tables are read back.
pub struct GpuBackend {
    gpu: Gpu,
    cfg: Config,
    slots: usize,
    cache_len: usize,
    embed: GpuQ8,
    layers: Vec<GpuLayer>,
    out_norm: GpuNorm,
    tables: GpuTables,
    cache: Vec<GpuKv>,
}

impl GpuBackend {
    /// One sequence of at most `cache_len` positions, on the default adapter.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(model: &Model, cache_len: usize) -> Result<Self> {
        Self::with_slots(model, 1, cache_len, GpuOptions::default())
    }

    /// `slots` independent sequences of at most `cache_len` positions each (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_slots(model: &Model, slots: usize, cache_len: usize, opts: GpuOptions) -> Result<Self> {
        Self::on(Gpu::new(opts)?, model, slots, cache_len)
    }

    /// `slots` independent sequences of at most `cache_len` positions each, on a device
    /// opened without blocking (the way a browser must).
    pub async fn with_slots_async(model: &Model, slots: usize, cache_len: usize, opts: GpuOptions) -> Result<Self> {
        Self::on(Gpu::new_async(opts).await?, model, slots, cache_len)
    }

    /// The engine on an opened device.
    pub fn on(gpu: Gpu, model: &Model, slots: usize, cache_len: usize) -> Result<Self> {
        let cfg = model.config().clone();
        if cache_len == 0 || cache_len > cfg.ctx {
            return Err(Error::InvalidArgument(format!("cache length {cache_len} must be in 1..={}", cfg.ctx)));
        }
        if slots == 0 || slots > cpu::MAX_SLOTS {
            return Err(Error::InvalidArgument(format!("{slots} sequence slots: must be in 1..={}", cpu::MAX_SLOTS)));
        }
        let w = &model.weights;
        let kvd = cfg.n_kv_heads * cfg.head_dim;
        // The largest buffers: the embedding's quants, one layer's KV cache.
        let limit = gpu.limits().max_storage_buffer_binding_size;
        for (what, bytes) in [("the token embedding", (cfg.vocab * cfg.dim) as u64), ("one layer's KV cache", (slots * cache_len * kvd * 2) as u64)] {
            if bytes > limit {
                return Err(Error::GpuLimits { adapter: gpu.adapter_info().name.clone(), what: format!("{what} needs a {bytes}-byte storage buffer, the adapter allows {limit}") });
            }
        }
        let layers = w
            .layers
            .iter()
            .map(|l| GpuLayer {
                attn_norm: gpu.upload_norm(&l.attn_norm),
                wq: gpu.upload_q4(&l.wq),
                wk: gpu.upload_q4(&l.wk),
                wv: gpu.upload_q4(&l.wv),
                wo: gpu.upload_q4(&l.wo),
                ffn_norm: gpu.upload_norm(&l.ffn_norm),
                w_gate: gpu.upload_q4(&l.w_gate),
                w_up: gpu.upload_q4(&l.w_up),
                w_down: gpu.upload_q4(&l.w_down),
            })
            .collect();
        let cache = (0..cfg.n_layers).map(|_| gpu.new_kv(slots * cache_len, cfg.n_kv_heads, cfg.head_dim)).collect();
        let b = GpuBackend { embed: gpu.upload_q8(&w.embed), out_norm: gpu.upload_norm(&w.out_norm), tables: gpu.upload_tables(&w.tables, cfg.head_dim), layers, cache, gpu, cfg, slots, cache_len };
        b.gpu.check()?;
        Ok(b)
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        self.gpu.adapter_info()
    }

    /// The adapter, its backend and the dot4 variant, for reports.
    pub fn describe(&self) -> String {
        self.gpu.describe()
    }

    pub fn gpu(&mut self) -> &mut Gpu {
        &mut self.gpu
    }

    /// Rows `row0..row0 + n` of `logits`, made now from the kept activations when they are
    /// deferred ([`GpuBuf::deferred_logits`]).
    fn logit_rows(&mut self, logits: &GpuBuf, row0: usize, n: usize) -> GpuBuf {
        match &logits.deferred_logits {
            Some(a) => self.gpu.matmul_q8(&self.embed, a, cpu::LOGIT_FRAC, row0, n),
            None => self.gpu.rows(logits, &(row0 as u32..(row0 + n) as u32).collect::<Vec<_>>()),
        }
    }
}

impl Backend for GpuBackend {
    type Buf = GpuBuf;
    type Q = GpuQ;

    fn cache_len(&self) -> usize {
        self.cache_len
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn embed(&mut self, tokens: &[u32]) -> Result<GpuBuf> {
        self.gpu.embed(&self.embed, tokens)
    }

    fn rmsnorm(&mut self, x: &GpuBuf, norm: Norm) -> GpuBuf {
        let g = match norm {
            Norm::Attn(l) => &self.layers[l].attn_norm,
            Norm::Ffn(l) => &self.layers[l].ffn_norm,
            Norm::Out => &self.out_norm,
        };
        self.gpu.rmsnorm(x, g, self.cfg.norm_eps_q24)
    }

    fn quantize(&mut self, z: &GpuBuf, frac: i32) -> GpuQ {
        self.gpu.quantize(z, frac)
    }

    fn matmul(&mut self, m: Mat, a: &GpuQ, frac_out: i32) -> GpuBuf {
        let w = match m {
            Mat::Q(l) => &self.layers[l].wq,
            Mat::K(l) => &self.layers[l].wk,
            Mat::V(l) => &self.layers[l].wv,
            Mat::O(l) => &self.layers[l].wo,
            Mat::Gate(l) => &self.layers[l].w_gate,
            Mat::Up(l) => &self.layers[l].w_up,
            Mat::Down(l) => &self.layers[l].w_down,
        };
        self.gpu.matmul_q4(w, a, frac_out)
    }

    fn logits(&mut self, a: &GpuQ) -> GpuBuf {
        // Made a chunk at a time in `freqs` (see GpuBuf::deferred_logits).
        GpuBuf { buf: a.exp.clone(), rows: a.rows, width: self.embed.rows, deferred_logits: Some(a.clone()) }
    }

    fn rope(&mut self, x: &mut GpuBuf, _heads: usize, pos: &[u32]) {
        self.gpu.rope(x, self.cfg.head_dim, pos, &self.tables);
    }

    fn kv_shift(&mut self, slot: usize, src: usize, dst: usize, n: usize) -> Result<()> {
        crate::backend::check_shift(self.slots, self.cache_len, self.tables.ctx, slot, src, dst, n)?;
        if n == 0 {
            return Ok(());
        }
        let base = slot * self.cache_len;
        let scratch = self.gpu.new_kv(n, self.cfg.n_kv_heads, self.cfg.head_dim);
        for c in &self.cache {
            self.gpu.kv_shift(c, &scratch, base + src, base + dst, n, &self.tables);
        }
        Ok(())
    }

    fn attention(&mut self, layer: usize, q: &GpuBuf, k: &GpuBuf, v: &GpuBuf, slot: &[u32], pos: &[u32]) -> GpuBuf {
        let dst: Vec<u32> = slot.iter().zip(pos).map(|(&s, &p)| s * self.cache_len as u32 + p).collect();
        self.gpu.kv_store(&self.cache[layer], k, v, &dst);
        match self.gpu.attention(q, &self.cache[layer], slot, pos, self.cache_len, self.cfg.n_heads, &self.tables) {
            Ok(o) => o,
            Err(e) => {
                // The trait is infallible here; keep the error for the next read (freqs).
                let mut s = lock(&self.gpu.error);
                s.get_or_insert_with(|| e.to_string());
                drop(s);
                self.gpu.upload_buf(&vec![0; q.rows * q.width], q.width)
            }
        }
    }

    fn silu_mul(&mut self, gate: &GpuBuf, up: &GpuBuf) -> GpuBuf {
        self.gpu.silu_mul(gate, up, &self.tables)
    }

    fn add(&mut self, x: &mut GpuBuf, y: &GpuBuf) {
        self.gpu.add(x, y);
    }

    fn rows(&mut self, x: &GpuBuf, idx: &[u32]) -> GpuBuf {
        self.gpu.rows(x, idx)
    }

    /// Natively the readback blocks in `device.poll` (so the future never returns `Pending`
    /// and the synchronous API can drive it); on wasm it awaits the map callback, which the
    /// browser's event loop delivers.
    async fn freqs(&mut self, logits: &GpuBuf, sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>) -> Result<()> {
        let vocab = self.embed.rows;
        let chunk = (self.gpu.chunk_bytes / (vocab * 4)).max(1);
        let mut row0 = 0;
        while row0 < logits.rows {
            let n = chunk.min(logits.rows - row0);
            let l = self.logit_rows(logits, row0, n);
            #[cfg(not(target_arch = "wasm32"))]
            let f = self.gpu.read_freq(&l, &self.tables)?;
            #[cfg(target_arch = "wasm32")]
            let f = {
                let buf = self.gpu.freq(&l, &self.tables);
                self.gpu.read_async::<u32>(&buf, 0, l.rows * l.width).await?
            };
            for (i, t) in f.chunks_exact(vocab).enumerate() {
                sink(row0 + i, t)?;
            }
            row0 += n;
        }
        self.gpu.check()
    }

    /// The tables stay on the GPU; `shaders/ranges.wgsl` reduces each to its symbol's range,
    /// and 8 bytes per row come back.
    async fn ranges(&mut self, logits: &GpuBuf, symbols: &[u32], sink: &mut dyn FnMut(usize, u32, u32) -> Result<()>) -> Result<()> {
        let vocab = self.embed.rows;
        if symbols.len() != logits.rows {
            return Err(Error::InvalidArgument(format!("{} symbols for {} rows of logits", symbols.len(), logits.rows)));
        }
        if let Some(&s) = symbols.iter().find(|&&s| s as usize >= vocab) {
            return Err(Error::InvalidArgument(format!("token {s} outside the vocabulary")));
        }
        let chunk = (self.gpu.chunk_bytes / (vocab * 4)).max(1);
        let mut row0 = 0;
        while row0 < logits.rows {
            let n = chunk.min(logits.rows - row0);
            let l = self.logit_rows(logits, row0, n);
            let f = self.gpu.freq(&l, &self.tables);
            let r = self.gpu.ranges(&f, n, vocab, &symbols[row0..row0 + n]);
            #[cfg(not(target_arch = "wasm32"))]
            let cf = self.gpu.read::<u32>(&r, 0, 2 * n)?;
            #[cfg(target_arch = "wasm32")]
            let cf = self.gpu.read_async::<u32>(&r, 0, 2 * n).await?;
            for (i, p) in cf.chunks_exact(2).enumerate() {
                sink(row0 + i, p[0], p[1])?;
            }
            row0 += n;
        }
        self.gpu.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_the_request_with_at_most_a_sixteenth_more() {
        let mut last = 0;
        for bytes in (0..70_000).chain([1 << 20, (1 << 20) + 1, 12_582_912, 50_331_647, 50_331_648]) {
            let c = size_class(bytes);
            assert!(c >= bytes.max(4) as u64 && c.is_multiple_of(4), "{bytes} → {c}");
            assert!(c <= 4096 || c * 16 <= bytes as u64 * 17 + 16 * 16, "{bytes} → {c}: more than 1/16 over");
            assert!(c >= last, "classes grow with the request");
            last = c;
        }
    }
}
