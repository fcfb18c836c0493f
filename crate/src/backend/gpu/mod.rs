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

mod buffers;
mod channel;
mod device;
mod kernels;
mod pool;

pub use wgpu::{AdapterInfo, DeviceType};

use crate::backend::cpu;
use crate::backend::{Backend, KvMap, Mat, Norm};
use crate::error::{Error, Result};
use crate::pack::{Config, Model};

pub use buffers::{GpuBuf, GpuKv, GpuNorm, GpuQ, GpuQ4, GpuQ8, GpuTables};
use channel::lock;
pub use device::{Gpu, GpuOptions, PASSES_PER_SUBMIT};
pub use kernels::matmul::TILED_FROM;
pub use pool::Buf;

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
    map: KvMap,
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
            return Err(Error::InvalidArgument(format!(
                "cache length {cache_len} must be in 1..={}",
                cfg.ctx
            )));
        }
        if slots == 0 || slots > cpu::MAX_SLOTS {
            return Err(Error::InvalidArgument(format!(
                "{slots} sequence slots: must be in 1..={}",
                cpu::MAX_SLOTS
            )));
        }
        let w = &model.weights;
        let kvd = cfg.n_kv_heads * cfg.head_dim;
        // The largest buffers: the embedding's quants, one layer's KV cache.
        let limit = gpu.limits().max_storage_buffer_binding_size;
        for (what, bytes) in [
            ("the token embedding", (cfg.vocab * cfg.dim) as u64),
            ("one layer's KV cache", (slots * cache_len * kvd * 2) as u64),
        ] {
            if bytes > limit {
                return Err(Error::GpuLimits {
                    adapter: gpu.adapter_info().name.clone(),
                    what: format!("{what} needs a {bytes}-byte storage buffer, the adapter allows {limit}"),
                });
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
        let cache = (0..cfg.n_layers)
            .map(|_| gpu.new_kv(slots * cache_len, cfg.n_kv_heads, cfg.head_dim))
            .collect();
        let b = GpuBackend {
            embed: gpu.upload_q8(&w.embed),
            out_norm: gpu.upload_norm(&w.out_norm),
            tables: gpu.upload_tables(&w.tables, cfg.head_dim),
            layers,
            cache,
            gpu,
            cfg,
            slots,
            cache_len,
            map: KvMap::fixed(slots, cache_len),
        };
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
            None => self
                .gpu
                .rows(logits, &(row0 as u32..(row0 + n) as u32).collect::<Vec<_>>()),
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

    fn kv_map(&self) -> &KvMap {
        &self.map
    }

    fn kv_place(&mut self, slot: usize, base: usize, cap: usize, keep: usize) -> Result<()> {
        let old = self.map.place(slot, base, cap, keep)?;
        if keep > 0 && old != base {
            let scratch = self.gpu.new_kv(keep, self.cfg.n_kv_heads, self.cfg.head_dim);
            for c in &self.cache {
                self.gpu.kv_copy(c, &scratch, old, base, keep);
            }
        }
        Ok(())
    }

    fn kv_reset(&mut self) {
        self.map = KvMap::fixed(self.slots, self.cache_len);
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
        GpuBuf {
            buf: a.exp.clone(),
            rows: a.rows,
            width: self.embed.rows,
            deferred_logits: Some(a.clone()),
        }
    }

    fn rope(&mut self, x: &mut GpuBuf, _heads: usize, pos: &[u32]) {
        self.gpu.rope(x, self.cfg.head_dim, pos, &self.tables);
    }

    fn kv_shift(&mut self, slot: usize, src: usize, dst: usize, n: usize) -> Result<()> {
        crate::backend::check_shift(&self.map, self.tables.ctx, slot, src, dst, n)?;
        if n == 0 {
            return Ok(());
        }
        let base = self.map.base(slot);
        let scratch = self.gpu.new_kv(n, self.cfg.n_kv_heads, self.cfg.head_dim);
        for c in &self.cache {
            self.gpu.kv_shift(c, &scratch, base + src, base + dst, n, &self.tables);
        }
        Ok(())
    }

    fn attention(&mut self, layer: usize, q: &GpuBuf, k: &GpuBuf, v: &GpuBuf, slot: &[u32], pos: &[u32]) -> GpuBuf {
        let base: Vec<u32> = slot.iter().map(|&s| self.map.base(s as usize) as u32).collect();
        let dst: Vec<u32> = base.iter().zip(pos).map(|(&b, &p)| b + p).collect();
        self.gpu.kv_store(&self.cache[layer], k, v, &dst);
        match self.gpu.attention(
            q,
            &self.cache[layer],
            &base,
            pos,
            self.cache_len,
            self.cfg.n_heads,
            &self.tables,
        ) {
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
    async fn freq_runs(&mut self, logits: &GpuBuf, sink: &mut crate::backend::RunSink<'_>) -> Result<()> {
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
            let tables = f
                .get(..n * vocab)
                .ok_or_else(|| Error::Internal(format!("{} values read back for {n} tables", f.len())))?;
            sink(row0, n, tables)?;
            row0 += n;
        }
        self.gpu.check()
    }

    /// The tables stay on the GPU; `shaders/ranges.wgsl` reduces each to its symbol's range,
    /// and 8 bytes per row come back.
    async fn ranges(
        &mut self,
        logits: &GpuBuf,
        symbols: &[u32],
        sink: &mut dyn FnMut(usize, u32, u32) -> Result<()>,
    ) -> Result<()> {
        let vocab = self.embed.rows;
        if symbols.len() != logits.rows {
            return Err(Error::InvalidArgument(format!(
                "{} symbols for {} rows of logits",
                symbols.len(),
                logits.rows
            )));
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

// --- `auto`: the one rule of the CLI, the browser bindings and (later) Python ---

/// What `auto` runs the model on.
pub enum Auto {
    /// A hardware adapter.
    Gpu(Box<Gpu>),
    /// The CPU engine; why not the GPU, for reports.
    Cpu(String),
}

/// `auto`'s rule, given what looking for an adapter found (`Gpu::new`, or `Gpu::new_async` in
/// the browser): a hardware adapter runs the model; a software one (Mesa lavapipe, SwiftShader:
/// the same kernels on the CPU's own cores, slower than the CPU engine — BENCHMARKS.md), none,
/// or one too small or failing leaves it to the CPU engine. Every engine gives the same bits,
/// so the choice never changes a file. Errors that are not about the GPU stay errors.
pub fn auto(found: Result<Gpu>) -> Result<Auto> {
    match found {
        Ok(g) if g.adapter_info().device_type != DeviceType::Cpu => Ok(Auto::Gpu(Box::new(g))),
        Ok(g) => Ok(Auto::Cpu(format!(
            "the software adapter {} is slower",
            g.adapter_info().name
        ))),
        Err(e) if auto_falls_back(&e) => Ok(Auto::Cpu("no usable GPU adapter".into())),
        Err(e) => Err(e),
    }
}

/// Whether `e`, met while opening the GPU engine that `auto` chose, leaves the model to the CPU
/// engine instead of failing the call: no adapter after all, one too small for the model, or a
/// GPU that fails.
pub fn auto_falls_back(e: &Error) -> bool {
    matches!(e, Error::GpuNoAdapter(_) | Error::GpuLimits { .. } | Error::Gpu(_))
}
