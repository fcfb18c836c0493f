//! The forward pass, written once for every engine.
//!
//! `tokens → embed → 30 × [RMSNorm → q,k,v → RoPE → attention → o → +x; RMSNorm → gate,up →
//! SiLU·up → down → +x] → RMSNorm → tied logits → integer frequency tables`.
//!
//! Every operation is a [`Backend`] call with exact integer semantics, so a batch of tokens
//! (prefill) and the same tokens one at a time give the same bits, on any engine.

use crate::backend::{cpu, Backend, Mat, Norm};
use crate::error::{Error, Result};
use crate::pack::{Config, Weights};

/// Fixed-point scalars of the weights that the forward pass passes to the engine.
#[derive(Debug, Clone)]
pub struct Fracs {
    /// `[n_layers]`
    pub attn_norm: Vec<i32>,
    /// `[n_layers]`
    pub ffn_norm: Vec<i32>,
    pub out_norm: i32,
}

impl Fracs {
    pub fn new(w: &Weights) -> Fracs {
        Fracs {
            attn_norm: w.layers.iter().map(|l| l.attn_norm.z_frac).collect(),
            ffn_norm: w.layers.iter().map(|l| l.ffn_norm.z_frac).collect(),
            out_norm: w.out_norm.z_frac,
        }
    }
}

/// Runs `tokens` at positions `pos0..pos0+len` (the engine's KV cache must hold positions
/// `0..pos0` of the same sequence) and hands the frequency table predicting the token after
/// each of `tokens[logits_from..]` to `sink(i, table)` with `i` counted from `logits_from`.
pub fn forward<B: Backend>(b: &mut B, cfg: &Config, fr: &Fracs, tokens: &[u32], pos0: usize, logits_from: usize, sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>) -> Result<()> {
    if pos0 + tokens.len() > cfg.ctx {
        return Err(Error::ContextOverflow { pos: pos0 + tokens.len(), ctx: cfg.ctx });
    }
    if tokens.is_empty() {
        return Ok(());
    }
    let mut x = b.embed(tokens)?;
    for l in 0..cfg.n_layers {
        // --- attention ---
        let z = b.rmsnorm(&x, Norm::Attn(l));
        let a = b.quantize(&z, fr.attn_norm[l]);
        let mut q = b.matmul(Mat::Q(l), &a, cpu::QK_FRAC);
        let mut k = b.matmul(Mat::K(l), &a, cpu::QK_FRAC);
        let v = b.matmul(Mat::V(l), &a, cpu::V_FRAC);
        b.rope(&mut q, cfg.n_heads, pos0);
        b.rope(&mut k, cfg.n_kv_heads, pos0);
        let att = b.attention(l, &q, &k, &v, pos0);
        let a = b.quantize(&att, cpu::ATT_OUT_FRAC);
        let o = b.matmul(Mat::O(l), &a, cpu::RESID_FRAC);
        b.add(&mut x, &o);
        // --- feed-forward ---
        let z = b.rmsnorm(&x, Norm::Ffn(l));
        let a = b.quantize(&z, fr.ffn_norm[l]);
        let gate = b.matmul(Mat::Gate(l), &a, cpu::FFN_FRAC);
        let up = b.matmul(Mat::Up(l), &a, cpu::FFN_FRAC);
        let h = b.silu_mul(&gate, &up);
        let a = b.quantize(&h, cpu::FFN_FRAC);
        let down = b.matmul(Mat::Down(l), &a, cpu::RESID_FRAC);
        b.add(&mut x, &down);
    }
    if logits_from >= tokens.len() {
        return Ok(());
    }
    let x = if logits_from > 0 { b.rows_from(&x, logits_from) } else { x };
    let z = b.rmsnorm(&x, Norm::Out);
    let a = b.quantize(&z, fr.out_norm);
    let logits = b.logits(&a);
    b.freqs(&logits, sink)
}
