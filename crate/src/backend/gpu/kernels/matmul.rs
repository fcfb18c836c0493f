//! The matmuls (Q4 and Q8 weights against int8 activations) and the embedding, which reads
//! the Q8 layout.

#[cfg(doc)]
use crate::backend::cpu;
use crate::backend::gpu::buffers::{GpuBuf, GpuQ, GpuQ4, GpuQ8};
use crate::backend::gpu::device::{groups, Gpu, TPT, WG};
use crate::error::{Error, Result};
use crate::shaders::{self, Kernel};

/// The tiled matmuls' tile (`TR` rows × `TT` tokens of `shaders/matmul_tiled.wgsl`, defined
/// with the kernels), and the batch from which the engine runs them instead of the
/// one-row-per-invocation kernels.
use crate::shaders::{TILE_ROWS, TILE_TOKENS};
pub const TILED_FROM: usize = 16;

impl Gpu {
    /// The matmul kernel for `tokens` rows of activations against `rows` weight rows, and its
    /// workgroups: the tiled one from [`Gpu::set_tiled_from`] rows on, else one invocation per
    /// row and 4 tokens.
    fn matmul_kernel(
        &self,
        per_row: &'static Kernel,
        tiled: &'static Kernel,
        rows: usize,
        tokens: usize,
    ) -> (&'static Kernel, (u32, u32)) {
        if tokens >= self.tiled_from {
            (tiled, (groups(rows, TILE_ROWS), groups(tokens, TILE_TOKENS)))
        } else {
            (per_row, (groups(rows, WG), groups(tokens, TPT)))
        }
    }

    /// `shaders/matmul_q4.wgsl` ↔ [`cpu::matmul_q4`].
    pub fn matmul_q4(&mut self, w: &GpuQ4, a: &GpuQ, frac_out: i32) -> GpuBuf {
        let out = GpuBuf {
            buf: self.buffer("matmul_q4.out", a.rows * w.rows * 4),
            rows: a.rows,
            width: w.rows,
            deferred_logits: None,
        };
        let p = shaders::MatmulParams {
            rows: w.rows as u32,
            tokens: a.rows as u32,
            frac_out,
            tok0: 0,
        };
        let (k, g) = self.matmul_kernel(&shaders::MATMUL_Q4, &shaders::MATMUL_Q4_TILED, w.rows, a.rows);
        self.dispatch(
            k,
            &[("NB", (w.cols / 32) as u32)],
            &p,
            &[&w.nib, &w.dm, &w.e, &a.q, &a.scale_sum, &a.exp, &out.buf],
            g,
        );
        out
    }

    /// `shaders/matmul_q8.wgsl` ↔ [`cpu::matmul_q8`], for activation rows `tok0..tok0+n`.
    pub fn matmul_q8(&mut self, w: &GpuQ8, a: &GpuQ, frac_out: i32, tok0: usize, n: usize) -> GpuBuf {
        let out = GpuBuf {
            buf: self.buffer("matmul_q8.out", n * w.rows * 4),
            rows: n,
            width: w.rows,
            deferred_logits: None,
        };
        let p = shaders::MatmulParams {
            rows: w.rows as u32,
            tokens: n as u32,
            frac_out,
            tok0: tok0 as u32,
        };
        let (k, g) = self.matmul_kernel(&shaders::MATMUL_Q8, &shaders::MATMUL_Q8_TILED, w.rows, n);
        self.dispatch(
            k,
            &[("NB", (w.cols / 32) as u32)],
            &p,
            &[&w.q, &w.d, &w.e, &a.q, &a.scale_sum, &a.exp, &out.buf],
            g,
        );
        out
    }

    /// `shaders/embed.wgsl` ↔ [`cpu::embed`] (same error for a token outside the vocabulary).
    pub fn embed(&mut self, w: &GpuQ8, tokens: &[u32]) -> Result<GpuBuf> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= w.rows) {
            return Err(Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary of {}",
                w.rows
            )));
        }
        let ids = self.upload("tokens", tokens);
        let out = GpuBuf {
            buf: self.buffer("embed.out", tokens.len() * w.cols * 4),
            rows: tokens.len(),
            width: w.cols,
            deferred_logits: None,
        };
        let p = shaders::EmbedParams {
            rows: tokens.len() as u32,
            dim: w.cols as u32,
            vocab: w.rows as u32,
            _pad: 0,
        };
        self.dispatch(
            &shaders::EMBED,
            &[],
            &p,
            &[&ids, &w.q, &w.d, &w.e, &out.buf],
            (groups(w.cols, WG), tokens.len().max(1) as u32),
        );
        Ok(out)
    }
}
