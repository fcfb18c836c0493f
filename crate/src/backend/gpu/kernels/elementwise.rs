//! Row by row and element by element: quantisation, RMSNorm, RoPE, SiLU, the residual add,
//! and row copies.

#[cfg(doc)]
use crate::backend::cpu;
use crate::backend::gpu::buffers::{GpuBuf, GpuNorm, GpuQ, GpuTables};
use crate::backend::gpu::device::{grid, groups, Gpu, WG};
use crate::shaders;

impl Gpu {
    /// `shaders/quantize.wgsl` ↔ [`cpu::quantize`].
    pub fn quantize(&mut self, z: &GpuBuf, frac: i32) -> GpuQ {
        let (rows, width) = (z.rows, z.width);
        let out = GpuQ {
            q: self.buffer("act.q", rows * width),
            scale_sum: self.buffer("act.scale_sum", rows * width / 32 * 4),
            exp: self.buffer("act.exp", rows * 4),
            rows,
            width,
        };
        let p = shaders::QuantizeParams {
            rows: rows as u32,
            width: width as u32,
            frac,
            _pad: 0,
        };
        self.dispatch(
            &shaders::QUANTIZE,
            &[],
            &p,
            &[&z.buf, &out.q, &out.scale_sum, &out.exp],
            grid(rows),
        );
        out
    }

    /// `shaders/rmsnorm.wgsl` ↔ [`cpu::rmsnorm_row`] on every row.
    pub fn rmsnorm(&mut self, x: &GpuBuf, g: &GpuNorm, eps_q24: u32) -> GpuBuf {
        let out = GpuBuf {
            buf: self.buffer("rmsnorm.out", x.rows * x.width * 4),
            rows: x.rows,
            width: x.width,
            deferred_logits: None,
        };
        let p = shaders::RmsnormParams {
            rows: x.rows as u32,
            dim: x.width as u32,
            eps_q24,
            g_exp: g.g_exp,
            z_frac: g.z_frac,
            ..Default::default()
        };
        self.dispatch(&shaders::RMSNORM, &[], &p, &[&x.buf, &g.g, &out.buf], grid(x.rows));
        out
    }

    /// `shaders/rope.wgsl` ↔ [`cpu::rope_row`] on every row, row `r` at position `pos[r]`.
    pub fn rope(&mut self, x: &GpuBuf, head_dim: usize, pos: &[u32], t: &GpuTables) {
        let pos_buf = self.upload_rows("rope.pos", pos);
        let p = shaders::RopeParams {
            rows: x.rows as u32,
            width: x.width as u32,
            ..Default::default()
        };
        self.dispatch(
            &shaders::ROPE,
            &[("HEAD_DIM", head_dim as u32)],
            &p,
            &[&x.buf, &pos_buf, &t.rope_cos, &t.rope_sin],
            (groups(x.width / 2, WG), x.rows.max(1) as u32),
        );
    }

    /// `shaders/silu_mul.wgsl` ↔ [`cpu::silu_mul`].
    pub fn silu_mul(&mut self, gate: &GpuBuf, up: &GpuBuf, t: &GpuTables) -> GpuBuf {
        let n = gate.rows * gate.width;
        let out = GpuBuf {
            buf: self.buffer("silu_mul.out", n * 4),
            rows: gate.rows,
            width: gate.width,
            deferred_logits: None,
        };
        let p = shaders::ElementwiseParams {
            n: n as u32,
            ..Default::default()
        };
        self.dispatch(
            &shaders::SILU_MUL,
            &[("CENTRE", t.silu_centre as u32)],
            &p,
            &[&gate.buf, &up.buf, &t.silu, &out.buf],
            grid(groups(n, WG) as usize),
        );
        out
    }

    /// `shaders/add.wgsl` ↔ `x += y` saturating ([`CpuBackend::add`](cpu::CpuBackend)).
    pub fn add(&mut self, x: &GpuBuf, y: &GpuBuf) {
        let n = x.rows * x.width;
        let p = shaders::ElementwiseParams {
            n: n as u32,
            ..Default::default()
        };
        self.dispatch(&shaders::ADD, &[], &p, &[&x.buf, &y.buf], grid(groups(n, WG) as usize));
    }

    /// The rows `idx` of `x`, in that order (buffer copies, runs of consecutive rows merged).
    pub fn rows(&mut self, x: &GpuBuf, idx: &[u32]) -> GpuBuf {
        let w = x.width as u64 * 4;
        let out = GpuBuf {
            buf: self.buffer("rows.out", idx.len() * x.width * 4),
            rows: idx.len(),
            width: x.width,
            deferred_logits: None,
        };
        let mut i = 0;
        while i < idx.len() {
            let mut j = i + 1;
            while j < idx.len() && idx[j] == idx[j - 1] + 1 {
                j += 1;
            }
            let (src, buf) = (x.buf.clone(), out.buf.clone());
            self.encoder()
                .copy_buffer_to_buffer(&src, idx[i] as u64 * w, &buf, i as u64 * w, (j - i) as u64 * w);
            i = j;
        }
        out
    }
}
