//! Float reference model: the SmolLM2 forward pass in f32 with burn (ndarray backend), on the
//! *same* weights the integer engine uses, dequantized from the lmz model pack.
//!
//! This is a yardstick, not a codec: `lmz eval --reference` scores a text with it next to the
//! integer engine (same weights, same context policy) to measure what the integer arithmetic
//! costs in bits. Float results differ between machines, so nothing here is ever on the
//! coding path, and the module is behind the non-default cargo feature `reference`, never in
//! the wasm bundle.
//!
//! The architecture is llama as llama.cpp runs the source GGUF: RMSNorm → GQA attention with
//! RoPE in llama.cpp's NORMAL mode (adjacent pairs `(2i, 2i+1)` rotated) → residual →
//! RMSNorm → SwiGLU FFN → residual, then a final RMSNorm and the tied embedding as output
//! projection. A window is one batched causal prefill (matrix-matrix products), positions
//! `0..tokens.len()`.
//!
//! Units: the pack's final-norm gain has log2(e) folded in (the integer engine's logits are in
//! log2 units); [`Reference::new`] divides it back out, so logits here are natural-log units and
//! [`Reference::log_probs`] returns natural-log probabilities.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::pack::{Config, Model, NormWeight, Q4Matrix, Q8Matrix};

/// Rows of the final projection computed at once: `[vocab, LOGIT_ROWS]` f32 is 25 MB
/// (below glibc's largest mmap threshold, so the buffers are reused, not re-faulted).
const LOGIT_ROWS: usize = 128;
/// Query rows per attention chunk (causal: a chunk multiplies only the keys up to its end).
const ATT_CHUNK: usize = 256;

/// One transformer block, weights dequantized to f32 and transposed to `[in, out]` so that a
/// batch of activations `[T, in]` multiplies them directly.
#[derive(Clone)]
struct Block {
    /// `[1, dim]`
    attn_norm: Tensor<2>,
    /// `[dim, n_heads·head_dim]`
    wq: Tensor<2>,
    /// `[dim, n_kv_heads·head_dim]`
    wk: Tensor<2>,
    /// `[dim, n_kv_heads·head_dim]`
    wv: Tensor<2>,
    /// `[n_heads·head_dim, dim]`
    wo: Tensor<2>,
    /// `[1, dim]`
    ffn_norm: Tensor<2>,
    /// `[dim, hidden]`
    w_gate: Tensor<2>,
    /// `[dim, hidden]`
    w_up: Tensor<2>,
    /// `[hidden, dim]`
    w_down: Tensor<2>,
}

/// The float reference model (burn tensors on the ndarray backend, f32). Cloning is cheap
/// (tensors share their storage).
#[derive(Clone)]
pub struct Reference {
    cfg: Config,
    device: Device,
    /// Token embedding and (tied) output projection: `[vocab, dim]`.
    embed: Tensor<2>,
    /// `n_layers` blocks.
    blocks: Vec<Block>,
    /// Final norm gain in natural-log units (log2(e) divided back out): `[1, dim]`.
    out_norm: Tensor<2>,
    /// RMSNorm epsilon (1e-5 for SmolLM2).
    eps: f64,
}

impl std::fmt::Debug for Reference {
    /// The config only: the tensors hold half a gigabyte of weights.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("cfg", &self.cfg)
            .field("eps", &self.eps)
            .finish_non_exhaustive()
    }
}

// --- dequantization ---

/// `W[r][c] = (d[r][b]·(nib − 8) + m[r][b]) · 2^-e[r]`, `b = c/32`, returned transposed:
/// `[cols, rows]` row-major.
fn dequant_q4_t(w: &Q4Matrix) -> Vec<f32> {
    let (rows, cols, nb) = (w.rows, w.cols, w.cols / 32);
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        let s = (-(w.e[r] as f64)).exp2();
        for b in 0..nb {
            let (d, m) = (w.d[r * nb + b] as f64, w.m[r * nb + b] as f64);
            let block = &w.nib[r * cols / 2 + b * 16..r * cols / 2 + b * 16 + 16];
            for (j, &byte) in block.iter().enumerate() {
                // ggml order: byte j holds element j (low nibble) and element j+16 (high nibble).
                let lo = (byte & 15) as f64 - 8.0;
                let hi = (byte >> 4) as f64 - 8.0;
                out[(b * 32 + j) * rows + r] = ((d * lo + m) * s) as f32;
                out[(b * 32 + j + 16) * rows + r] = ((d * hi + m) * s) as f32;
            }
        }
    }
    out
}

/// `W[r][c] = d[r][b] · q[r][c] · 2^-e[r]`, `[rows, cols]` row-major (not transposed).
fn dequant_q8(w: &Q8Matrix) -> Vec<f32> {
    let (rows, cols, nb) = (w.rows, w.cols, w.cols / 32);
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        let s = (-(w.e[r] as f64)).exp2();
        for c in 0..cols {
            out[r * cols + c] = (w.d[r * nb + c / 32] as f64 * w.q[r * cols + c] as f64 * s) as f32;
        }
    }
    out
}

/// `g = g_int · 2^-g_exp · mul`, as a `[1, dim]` row.
fn dequant_norm(n: &NormWeight, mul: f64, device: &Device) -> Tensor<2> {
    let s = (-(n.g_exp as f64)).exp2() * mul;
    let g: Vec<f32> = n.g.iter().map(|&v| (v as f64 * s) as f32).collect();
    let len = g.len();
    Tensor::from_data(TensorData::new(g, [1, len]), device)
}

fn q4_tensor(w: &Q4Matrix, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(dequant_q4_t(w), [w.cols, w.rows]), device)
}

// --- forward ---

/// `x / sqrt(mean(x²) + eps) · g` over the last axis. `x: [T, dim]`, `g: [1, dim]`.
fn rmsnorm(x: Tensor<2>, g: &Tensor<2>, eps: f64) -> Tensor<2> {
    let ms = (x.clone() * x.clone()).mean_dim(1); // [T, 1]
    x * (ms + eps).sqrt().recip() * g.clone()
}

/// RoPE, llama.cpp NORMAL mode: pairs `(2i, 2i+1)` of each head rotated by `pos·θ_i`, as
/// `x·cos + rot(x)·sin` where `rot` maps each pair `(a, b)` to `(−b, a)` (a matmul with the
/// signed permutation `rot: [head_dim, head_dim]`, cheaper than strided slicing here).
/// `x: [T, H, head_dim]`; `cos`, `sin: [T, 1, head_dim]` (each angle twice, once per pair member).
fn rope(x: Tensor<3>, rot: &Tensor<2>, cos: &Tensor<3>, sin: &Tensor<3>) -> Tensor<3> {
    let [t, h, hd] = x.dims();
    let xr = x.clone().reshape([t * h, hd]).matmul(rot.clone()).reshape([t, h, hd]);
    x * cos.clone() + xr * sin.clone()
}

/// Maps `f` over `items` on every core, biggest-first as given (burn-ndarray's elementwise
/// ops are single-threaded; its matmuls are not, and share their pool safely).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break out };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        // A worker only panics if `f` does; pass that panic on unchanged.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

impl Reference {
    /// Dequantizes every weight of `model` to f32 (about 0.55 GB).
    pub fn new(model: &Model) -> Result<Self> {
        let cfg = model.config().clone();
        if cfg.n_heads * cfg.head_dim == 0
            || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads)
            || !cfg.head_dim.is_multiple_of(2)
        {
            return Err(Error::Pack(format!("reference model: unsupported head layout {cfg:?}")));
        }
        #[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; the brief names ndarray.
        let device = Device::ndarray();
        let w = &model.weights;
        let embed = Tensor::from_data(
            TensorData::new(dequant_q8(&w.embed), [w.embed.rows, w.embed.cols]),
            &device,
        );
        let blocks = w
            .layers
            .iter()
            .map(|l| Block {
                attn_norm: dequant_norm(&l.attn_norm, 1.0, &device),
                wq: q4_tensor(&l.wq, &device),
                wk: q4_tensor(&l.wk, &device),
                wv: q4_tensor(&l.wv, &device),
                wo: q4_tensor(&l.wo, &device),
                ffn_norm: dequant_norm(&l.ffn_norm, 1.0, &device),
                w_gate: q4_tensor(&l.w_gate, &device),
                w_up: q4_tensor(&l.w_up, &device),
                w_down: q4_tensor(&l.w_down, &device),
            })
            .collect();
        // The pack folds log2(e) into this gain (log2-unit logits); take it back out.
        let out_norm = dequant_norm(&w.out_norm, std::f64::consts::LN_2, &device);
        let eps = cfg.norm_eps_q24 as f64 / (1u64 << 24) as f64;
        Ok(Reference {
            cfg,
            device,
            embed,
            blocks,
            out_norm,
            eps,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Hidden state after the final norm for positions `0..tokens.len()`: `[T, dim]`.
    fn forward(&self, tokens: &[u32]) -> Tensor<2> {
        let c = &self.cfg;
        let (t, hd, nh, nkv) = (tokens.len(), c.head_dim, c.n_heads, c.n_kv_heads);
        let group = nh / nkv;
        let dev = &self.device;

        let ids: Vec<i64> = tokens.iter().map(|&v| v as i64).collect();
        let mut x = self
            .embed
            .clone()
            .select(0, Tensor::<1, Int>::from_data(TensorData::new(ids, [t]), dev)); // [T, dim]

        // RoPE angles pos·base^(-2i/head_dim), in f64 (float reference: platform sin/cos are fine).
        let (mut cos, mut sin) = (Vec::with_capacity(t * hd), Vec::with_capacity(t * hd));
        for p in 0..t {
            for i in 0..hd {
                let a = p as f64 * c.rope_base.powf(-2.0 * (i / 2) as f64 / hd as f64);
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let cos = Tensor::<3>::from_data(TensorData::new(cos, [t, 1, hd]), dev);
        let sin = Tensor::<3>::from_data(TensorData::new(sin, [t, 1, hd]), dev);
        let mut rot = vec![0f32; hd * hd]; // (a, b) → (−b, a) on each pair
        for i in 0..hd / 2 {
            rot[(2 * i + 1) * hd + 2 * i] = -1.0;
            rot[2 * i * hd + 2 * i + 1] = 1.0;
        }
        let rot = Tensor::<2>::from_data(TensorData::new(rot, [hd, hd]), dev);

        // Queries go in chunks of ATT_CHUNK rows; chunk [s, e) needs keys 0..e only, which
        // skips the masked upper triangle (nearly half the work of a long window). Its mask is
        // `[nkv, group·(e−s), e]` in the grouped layout (row g·(e−s) + i is query s+i of head
        // kv·group + g): true where key j > query s+i. The same for every layer. Listed last
        // chunk first, so that `par_map` starts the biggest ones first.
        let chunks: Vec<(usize, usize, Tensor<3, Bool>)> = (0..t)
            .step_by(ATT_CHUNK)
            .rev()
            .map(|s| {
                let e = (s + ATT_CHUNK).min(t);
                let m = Tensor::<2, Bool>::tril_mask([e - s, e], s as i64, dev)
                    .repeat_dim(0, group)
                    .reshape([1, group * (e - s), e])
                    .repeat_dim(0, nkv);
                (s, e, m)
            })
            .collect();
        let scale = 1.0 / (hd as f64).sqrt();

        for b in &self.blocks {
            // --- attention ---
            let h = rmsnorm(x.clone(), &b.attn_norm, self.eps);
            let q = rope(h.clone().matmul(b.wq.clone()).reshape([t, nh, hd]), &rot, &cos, &sin);
            let k = rope(h.clone().matmul(b.wk.clone()).reshape([t, nkv, hd]), &rot, &cos, &sin);
            let v = h.matmul(b.wv.clone()).reshape([t, nkv, hd]);
            // GQA: head h uses kv head h / group, so [T, nh, hd] → [nh, T, hd] = [nkv, group, T, hd].
            let q = (q * scale).swap_dims(0, 1).reshape([nkv, group, t, hd]);
            let k = k.swap_dims(0, 1); // [nkv, T, hd]
            let v = v.swap_dims(0, 1); // [nkv, T, hd]
            let att: Vec<Tensor<4>> = par_map(&chunks, |(s, e, mask)| {
                let (s, e) = (*s, *e);
                let qc = q
                    .clone()
                    .slice([0..nkv, 0..group, s..e, 0..hd])
                    .reshape([nkv, group * (e - s), hd]);
                let kc = k.clone().slice([0..nkv, 0..e, 0..hd]).transpose(); // [nkv, hd, e]
                let vc = v.clone().slice([0..nkv, 0..e, 0..hd]); // [nkv, e, hd]
                let scores = qc.matmul(kc).mask_fill(mask.clone(), f32::NEG_INFINITY); // [nkv, group·(e−s), e]
                softmax(scores, 2).matmul(vc).reshape([nkv, group, e - s, hd])
            });
            let att = Tensor::cat(att.into_iter().rev().collect(), 2); // chunks back in order: [nkv, group, T, hd]
            let att = att.reshape([nh, t, hd]).swap_dims(0, 1).reshape([t, nh * hd]);
            x = x + att.matmul(b.wo.clone());

            // --- feed-forward (SwiGLU) ---
            let h = rmsnorm(x.clone(), &b.ffn_norm, self.eps);
            let gate = silu(h.clone().matmul(b.w_gate.clone()));
            let up = h.matmul(b.w_up.clone());
            x = x + (gate * up).matmul(b.w_down.clone());
        }
        rmsnorm(x, &self.out_norm, self.eps)
    }

    /// Log-probabilities (natural log) of `tokens[i+1]` given `tokens[..=i]` for every `i` in
    /// `score_from..tokens.len()-1`, from one batched causal forward pass over `tokens`
    /// (positions `0..tokens.len()`). Returns `tokens.len() − 1 − score_from` values.
    pub fn log_probs(&self, tokens: &[u32], score_from: usize) -> Result<Vec<f64>> {
        let c = &self.cfg;
        if tokens.is_empty() || score_from >= tokens.len() {
            return Err(Error::InvalidArgument(format!(
                "reference: score_from {score_from} must be below the token count {}",
                tokens.len()
            )));
        }
        if tokens.len() > c.ctx {
            return Err(Error::ContextOverflow {
                pos: tokens.len() - 1,
                ctx: c.ctx,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&v| v as usize >= c.vocab) {
            return Err(Error::InvalidArgument(format!(
                "reference: token {bad} is outside the vocabulary of {}",
                c.vocab
            )));
        }
        let n = tokens.len() - 1 - score_from;
        if n == 0 {
            return Ok(Vec::new());
        }
        let hidden = self.forward(tokens); // [T, dim]
        let slices: Vec<usize> = (score_from..tokens.len() - 1).step_by(LOGIT_ROWS).collect();
        let parts = par_map(&slices, |&row| -> Result<Vec<f32>> {
            let rows = LOGIT_ROWS.min(tokens.len() - 1 - row);
            let h = hidden.clone().slice([row..row + rows, 0..c.dim]); // [rows, dim]
            let logits = self.embed.clone().matmul(h.transpose()); // [vocab, rows]
                                                                   // Stable log-sum-exp over the vocabulary (axis 0).
            let max = logits.clone().max_dim(0); // [1, rows]
            let lse = (logits.clone() - max.clone()).exp().sum_dim(0).log() + max; // [1, rows]
            let next: Vec<i64> = tokens[row + 1..row + 1 + rows].iter().map(|&v| v as i64).collect();
            let target = logits.gather(
                0,
                Tensor::<2, Int>::from_data(TensorData::new(next, [1, rows]), &self.device),
            ); // [1, rows]
            let lp = (target - lse)
                .try_into_data()
                .map_err(|e| Error::InvalidArgument(format!("reference: tensor readback failed: {e}")))?;
            lp.try_into_vec_as::<f32>()
                .map_err(|e| Error::InvalidArgument(format!("reference: unexpected tensor data: {e:?}")))
        });
        let mut out = Vec::with_capacity(n);
        for p in parts {
            out.extend(p?.into_iter().map(f64::from));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real model and its reference, or `None` where the pack is missing outside CI (the
    /// test says why it skips; in CI, which fetches the pack, it fails).
    fn load() -> Option<(Model, Reference)> {
        let path = crate::fetch::default_pack_path(None);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                let why = format!(
                    "model pack {} not readable ({e}): run `lmz model fetch`",
                    path.display()
                );
                return crate::tiny::skip_outside_ci(&why);
            }
        };
        let model = Model::from_pack_bytes(&bytes).unwrap_or_else(|e| {
            panic!(
                "model pack {} does not load ({e}): run `lmz model fetch`",
                path.display()
            )
        });
        let r = Reference::new(&model).expect("reference builds");
        Some((model, r))
    }

    fn ids(model: &Model, words: &[&str]) -> Vec<u32> {
        words
            .iter()
            .map(|w| {
                model
                    .tokenizer
                    .tokens
                    .iter()
                    .position(|t| t == w)
                    .unwrap_or_else(|| panic!("token {w:?} not in the vocabulary")) as u32
            })
            .collect()
    }

    /// Rank of `tok` in the next-token distribution after `ctx` (0 = most likely).
    fn rank(r: &Reference, ctx: &[u32], tok: u32) -> usize {
        let h = r.forward(ctx);
        let t = ctx.len();
        let logits = r
            .embed
            .clone()
            .matmul(h.slice([t - 1..t, 0..r.cfg.dim]).transpose())
            .into_data();
        let l = logits.as_slice::<f32>().unwrap();
        l.iter().filter(|&&v| v > l[tok as usize]).count()
    }

    #[test]
    fn reference_is_a_sane_language_model() {
        let Some((model, r)) = load() else { return };
        let words = [
            "The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", ".", "ĠIt", "Ġwas", "Ġa", "Ġsunny", "Ġday", ".",
        ];
        let toks = ids(&model, &words);
        let lp = r.log_probs(&toks, 0).unwrap();
        assert_eq!(lp.len(), toks.len() - 1);
        assert!(lp.iter().all(|v| v.is_finite() && *v <= 1e-6), "{lp:?}");
        let nll = -lp.iter().sum::<f64>() / lp.len() as f64;
        eprintln!("per-token log-probs {lp:?}; mean NLL {nll:.3} nats");
        assert!(nll < 5.0, "mean NLL {nll} nats is not far below ln(49152) ≈ 10.8");
        let mat = rank(&r, &toks[..5], toks[5]);
        eprintln!("rank of \"Ġmat\" after \"The cat sat on the\": {mat}");
        assert!(mat < 100, "\"Ġmat\" ranks {mat}");
    }

    #[test]
    fn reference_is_causal() {
        let Some((model, r)) = load() else { return };
        let words = [
            "The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", ".", "ĠIt", "Ġwas", "Ġa", "Ġsunny", "Ġday", ".",
        ];
        let toks = ids(&model, &words);
        let long = r.log_probs(&toks, 0).unwrap();
        for n in [2, 6, 9] {
            let short = r.log_probs(&toks[..n], 0).unwrap();
            for (i, (a, b)) in short.iter().zip(&long).enumerate() {
                assert!((a - b).abs() < 1e-4, "prefix {n}, position {i}: {a} vs {b}");
            }
        }
        // Across attention chunks: 600 positions are three chunks, 300 are two.
        let long_toks: Vec<u32> = toks.iter().cycle().take(600).copied().collect();
        let long = r.log_probs(&long_toks, 0).unwrap();
        let short = r.log_probs(&long_toks[..300], 0).unwrap();
        for (i, (a, b)) in short.iter().zip(&long).enumerate() {
            assert!((a - b).abs() < 1e-4, "600 vs 300 tokens, position {i}: {a} vs {b}");
        }
        let long = r.log_probs(&toks, 0).unwrap();
        // score_from just drops the first scores.
        let tail = r.log_probs(&toks, 4).unwrap();
        assert_eq!(tail.len(), toks.len() - 5);
        for (a, b) in tail.iter().zip(&long[4..]) {
            assert!((a - b).abs() < 1e-4);
        }
        assert!(r.log_probs(&toks, toks.len() - 1).unwrap().is_empty());
        assert!(r.log_probs(&[], 0).is_err());
        assert!(r.log_probs(&[model.config().vocab as u32], 0).is_err());
    }

    /// Manual check, not part of the suite: `LMZ_REF_TOKENS=FILE` (space-separated token ids)
    /// scores them in one window, prints the time and writes the log-probs to `FILE.ref`, to
    /// compare with another implementation (llama.cpp) on the same tokens. Without the variable
    /// it times a 2048-token window of synthetic ids.
    #[test]
    #[ignore]
    fn reference_window() {
        let Some((model, r)) = load() else { return };
        let (toks, out): (Vec<u32>, _) = match std::env::var("LMZ_REF_TOKENS") {
            Ok(f) => (
                std::fs::read_to_string(&f)
                    .unwrap()
                    .split_whitespace()
                    .map(|s| s.parse().unwrap())
                    .collect(),
                Some(format!("{f}.ref")),
            ),
            Err(_) => (
                (0..2048u32)
                    .map(|i| 1 + (i * 7919) % (model.config().vocab as u32 - 1))
                    .collect(),
                None,
            ),
        };
        let t0 = std::time::Instant::now();
        let lp = r.log_probs(&toks, 0).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        let nll = -lp.iter().sum::<f64>() / lp.len() as f64;
        eprintln!(
            "{} tokens in {dt:.2} s ({:.0} tok/s); mean NLL {nll:.4} nats = {:.4} bits/token",
            toks.len(),
            toks.len() as f64 / dt,
            nll / std::f64::consts::LN_2
        );
        if let Some(out) = out {
            std::fs::write(out, lp.iter().map(|v| format!("{v}\n")).collect::<String>()).unwrap();
        }
    }
}
