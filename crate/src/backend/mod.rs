//! The operations the forward pass is written in, and the engines that implement them.
//!
//! [`crate::model::forward`] is written once against [`Backend`]; the CPU engine
//! ([`cpu::CpuBackend`]) implements every operation with the integer kernels of
//! [`cpu`], which are the oracles for the WGSL kernels (one `shaders/NAME.wgsl` per
//! `cpu::NAME`, with a parity test of the same name). An engine owns its copy of the weights
//! (unpacked for the CPU, uploaded for a GPU) and its KV cache.

pub mod cpu;

use crate::error::Result;

/// Which matrix of which layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mat {
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
}

/// Which RMSNorm gain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    Attn(usize),
    Ffn(usize),
    Out,
}

/// An engine for the integer forward pass. Activations are `i32` fixed-point matrices
/// `[tokens, width]`, row-major; every operation is exact integer arithmetic with the
/// semantics of the `cpu` kernel of the same name.
pub trait Backend {
    /// An `i32` activation matrix on the engine.
    type Buf;
    /// int8 block-quantised activations (see [`cpu::QAct`]).
    type Q;

    /// The most positions one sequence may use (the KV cache's length).
    fn cache_len(&self) -> usize;
    /// Residual stream `[tokens, dim]`, Q12, from the token embedding.
    fn embed(&mut self, tokens: &[u32]) -> Result<Self::Buf>;
    /// RMSNorm times gain; output in the norm's `z_frac` fixed point.
    fn rmsnorm(&mut self, x: &Self::Buf, norm: Norm) -> Self::Buf;
    /// int8 blocks of 32 with a 12-bit mantissa per block and one exponent per token.
    fn quantize(&mut self, z: &Self::Buf, frac: i32) -> Self::Q;
    /// `a · Wᵀ` with output in Q`frac_out`.
    fn matmul(&mut self, w: Mat, a: &Self::Q, frac_out: i32) -> Self::Buf;
    /// Tied output projection, logits in Q10 log2 units.
    fn logits(&mut self, a: &Self::Q) -> Self::Buf;
    /// Rotates `heads` heads of `x` in place; row `t` is at position `pos0 + t`.
    fn rope(&mut self, x: &mut Self::Buf, heads: usize, pos0: usize);
    /// Stores `k`, `v` at positions `pos0..` of `layer`'s cache and returns causal attention
    /// for the rows of `q`, Q23.
    fn attention(&mut self, layer: usize, q: &Self::Buf, k: &Self::Buf, v: &Self::Buf, pos0: usize) -> Self::Buf;
    /// `silu(gate) · up`, Q10.
    fn silu_mul(&mut self, gate: &Self::Buf, up: &Self::Buf) -> Self::Buf;
    /// `x += y` (saturating).
    fn add(&mut self, x: &mut Self::Buf, y: &Self::Buf);
    /// Rows `from..` of `x`.
    fn rows_from(&mut self, x: &Self::Buf, from: usize) -> Self::Buf;
    /// Frequency tables of every row of `logits`, handed to `sink(row, table)` in order.
    fn freqs(&mut self, logits: &Self::Buf, sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>) -> Result<()>;
}
