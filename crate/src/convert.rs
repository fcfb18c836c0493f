//! GGUF (llama architecture, Q4_1/Q8_0/F32 tensors) → lmz model pack.
//!
//! Every number is computed with exact IEEE-754 double arithmetic on values that are exact
//! in f64 (f16/f32 scales times powers of two), and tables with `libm`, so the pack — and
//! therefore its fingerprint — is byte-for-byte the same on every machine.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf};
use crate::pack::{self, Config, PackMeta, META_KEY, PACK_FORMAT, PACK_VERSION};
use crate::tables;

/// Largest |d|, |m| of a Q4_1 block in integer form (14-bit signed).
pub const Q4_SCALE_MAX: f64 = 8191.0;
/// Largest |d| of a Q8_0 block in integer form (12-bit signed).
pub const Q8_SCALE_MAX: f64 = 2047.0;
/// Normalised activations are bounded by sqrt(dim) (≤ 32 for dim ≤ 1024); a little margin.
const NORM_Y_BOUND: f64 = 32.5;

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1F) as i32;
    let man = (bits & 0x3FF) as f64;
    sign * match exp {
        0 => man * 2f64.powi(-24),
        31 => f64::NAN,
        e => (1024.0 + man) * 2f64.powi(e - 25),
    }
}

/// Largest exponent `e` (in -64..=64) with `round(max · 2^e) <= limit`.
fn row_exponent(max: f64, limit: f64) -> i32 {
    if max == 0.0 {
        return 0;
    }
    let mut e = 64;
    while e > -64 && (max * 2f64.powi(e)).round() > limit {
        e -= 1;
    }
    e
}

struct Out {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

impl Out {
    fn push(&mut self, name: impl Into<String>, dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) {
        self.tensors.push((name.into(), dtype, shape, data));
    }
    fn strings(&mut self, name: &str, v: &[String]) {
        let mut bytes = Vec::new();
        let mut offs = vec![0u32];
        for s in v {
            bytes.extend_from_slice(s.as_bytes());
            offs.push(bytes.len() as u32);
        }
        self.push(format!("{name}.offsets"), Dtype::U32, vec![offs.len()], le32(&offs));
        self.push(format!("{name}.bytes"), Dtype::U8, vec![bytes.len()], bytes);
    }
}

fn le16(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn le32<T: Copy + Into<i64>>(v: &[T]) -> Vec<u8> {
    v.iter().flat_map(|&x| (x.into() as u32).to_le_bytes()).collect()
}

fn q4_1(g: &Gguf, name: &str, rows: usize, cols: usize, out: &mut Out, dst: &str) -> Result<()> {
    let (t, data) = g.tensor(name)?;
    if t.ty != GgmlType::Q4_1 || t.dims != [cols as u64, rows as u64] {
        return Err(Error::Gguf(format!(
            "{name}: expected Q4_1 [{cols}, {rows}], found {:?} {:?}",
            t.ty, t.dims
        )));
    }
    let nb = cols / 32;
    let mut nib = Vec::with_capacity(rows * cols / 2);
    let (mut d_out, mut m_out, mut e_out) = (
        Vec::with_capacity(rows * nb),
        Vec::with_capacity(rows * nb),
        Vec::with_capacity(rows),
    );
    for r in 0..rows {
        let row = &data[r * nb * 20..(r + 1) * nb * 20];
        // (d, m + 8d): the re-centred form keeps both scales small (see docs/MODEL.md).
        let dm: Vec<(f64, f64)> = row
            .chunks_exact(20)
            .map(|b| {
                let d = f16_to_f64(u16::from_le_bytes([b[0], b[1]]));
                let m = f16_to_f64(u16::from_le_bytes([b[2], b[3]]));
                (d, m + 8.0 * d)
            })
            .collect();
        if dm.iter().any(|(d, m)| !d.is_finite() || !m.is_finite()) {
            return Err(Error::Gguf(format!("{name}: non-finite block scale in row {r}")));
        }
        let max = dm.iter().fold(0f64, |a, (d, m)| a.max(d.abs()).max(m.abs()));
        let e = row_exponent(max, Q4_SCALE_MAX);
        let s = 2f64.powi(e);
        e_out.push(e.clamp(-128, 127) as i8);
        for (b, (d, m)) in row.chunks_exact(20).zip(&dm) {
            d_out.push((d * s).round() as i16);
            m_out.push((m * s).round() as i16);
            nib.extend_from_slice(&b[4..20]);
        }
    }
    out.push(format!("{dst}.nib"), Dtype::U8, vec![rows, cols / 2], nib);
    out.push(format!("{dst}.d"), Dtype::I16, vec![rows, nb], le16(&d_out));
    out.push(format!("{dst}.m"), Dtype::I16, vec![rows, nb], le16(&m_out));
    out.push(
        format!("{dst}.e"),
        Dtype::I8,
        vec![rows],
        e_out.iter().map(|&x| x as u8).collect(),
    );
    Ok(())
}

fn q8_0(g: &Gguf, name: &str, rows: usize, cols: usize, out: &mut Out, dst: &str) -> Result<()> {
    let (t, data) = g.tensor(name)?;
    if t.ty != GgmlType::Q8_0 || t.dims != [cols as u64, rows as u64] {
        return Err(Error::Gguf(format!(
            "{name}: expected Q8_0 [{cols}, {rows}], found {:?} {:?}",
            t.ty, t.dims
        )));
    }
    let nb = cols / 32;
    let mut q = Vec::with_capacity(rows * cols);
    let (mut d_out, mut e_out) = (Vec::with_capacity(rows * nb), Vec::with_capacity(rows));
    for r in 0..rows {
        let row = &data[r * nb * 34..(r + 1) * nb * 34];
        let ds: Vec<f64> = row
            .chunks_exact(34)
            .map(|b| f16_to_f64(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        if ds.iter().any(|d| !d.is_finite()) {
            return Err(Error::Gguf(format!("{name}: non-finite block scale in row {r}")));
        }
        let e = row_exponent(ds.iter().fold(0f64, |a, d| a.max(d.abs())), Q8_SCALE_MAX);
        e_out.push(e.clamp(-128, 127) as i8);
        for (b, d) in row.chunks_exact(34).zip(&ds) {
            d_out.push((d * 2f64.powi(e)).round() as i16);
            q.extend_from_slice(&b[2..34]);
        }
    }
    out.push(format!("{dst}.q"), Dtype::I8, vec![rows, cols], q);
    out.push(format!("{dst}.d"), Dtype::I16, vec![rows, nb], le16(&d_out));
    out.push(
        format!("{dst}.e"),
        Dtype::I8,
        vec![rows],
        e_out.iter().map(|&x| x as u8).collect(),
    );
    Ok(())
}

fn norm(g: &Gguf, name: &str, dim: usize, mul: f64, out: &mut Out, dst: &str) -> Result<()> {
    let (t, data) = g.tensor(name)?;
    if t.ty != GgmlType::F32 || t.dims != [dim as u64] {
        return Err(Error::Gguf(format!("{name}: expected F32 [{dim}]")));
    }
    let v: Vec<f64> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64 * mul)
        .collect();
    let max = v.iter().fold(0f64, |a, x| a.max(x.abs()));
    if !max.is_finite() {
        return Err(Error::Gguf(format!("{name}: non-finite gain")));
    }
    let g_exp = row_exponent(max, 32767.0).clamp(0, 40);
    let gi: Vec<i32> = v.iter().map(|x| (x * 2f64.powi(g_exp)).round() as i32).collect();
    // z = y·g with |y| ≤ NORM_Y_BOUND: pick the fraction bits so |z| < 2^30.
    let mut z_frac = 40;
    while z_frac > -8 && NORM_Y_BOUND * max.max(1e-9) * 2f64.powi(z_frac) >= (1u64 << 30) as f64 {
        z_frac -= 1;
    }
    out.push(format!("{dst}.g"), Dtype::I32, vec![dim], le32(&gi));
    out.push(format!("{dst}.meta"), Dtype::I32, vec![2], le32(&[g_exp, z_frac]));
    Ok(())
}

/// Converts a SmolLM2-style llama GGUF to pack bytes.
pub fn gguf_to_pack(gguf_bytes: &[u8], source: &str) -> Result<Vec<u8>> {
    let g = Gguf::parse(gguf_bytes)?;
    let (config, tokens) = read_config(&g)?;
    let mut out = Out { tensors: Vec::new() };
    push_tokenizer(&g, &config, &tokens, &mut out)?;
    push_weights(&g, &config, &mut out)?;
    push_tables(&config, &mut out);

    let meta = PackMeta {
        format: PACK_FORMAT.into(),
        version: PACK_VERSION,
        config,
        source_sha256: pack::hex(&pack::sha256(gguf_bytes)),
        source: source.into(),
        license: g.get_str("general.license").unwrap_or("unknown").to_string(),
    };
    out.serialize(&meta)
}

/// The model's configuration and the tokenizer's vocabulary, from the GGUF's metadata;
/// refuses what the pack cannot hold (another architecture or tokenizer, partial RoPE).
fn read_config(g: &Gguf) -> Result<(Config, Vec<String>)> {
    let arch = g.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(Error::Gguf(format!(
            "architecture {arch:?} is not supported (llama only)"
        )));
    }
    let tok_model = g.get_str("tokenizer.ggml.model")?;
    if tok_model != "gpt2" {
        return Err(Error::Gguf(format!(
            "tokenizer {tok_model:?} is not supported (gpt2 byte-level BPE only)"
        )));
    }
    let u = |k: &str| g.get_u64(k).map(|v| v as usize);
    let n_heads = u("llama.attention.head_count")?;
    let dim = u("llama.embedding_length")?;
    let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
    let config = Config {
        name: g.get_str("general.name").unwrap_or("unnamed").to_string(),
        n_layers: u("llama.block_count")?,
        dim,
        hidden: u("llama.feed_forward_length")?,
        n_heads,
        n_kv_heads: u("llama.attention.head_count_kv")?,
        head_dim: dim / n_heads.max(1),
        vocab: tokens.len(),
        ctx: u("llama.context_length")?,
        rope_base: g.get_f32("llama.rope.freq_base")? as f64,
        bos: g.get_u64("tokenizer.ggml.bos_token_id")? as u32,
        doc_start: match tokens.iter().position(|t| t == "<|endoftext|>") {
            Some(i) => i as u32,
            None => g.get_u64("tokenizer.ggml.bos_token_id")? as u32,
        },
        eos: g.get_u64("tokenizer.ggml.eos_token_id")? as u32,
        norm_eps_q24: (g.get_f32("llama.attention.layer_norm_rms_epsilon")? as f64 * (1u64 << 24) as f64).round()
            as u32,
    };
    pack::check_config(&config)?;
    if let Ok(rd) = g.get_u64("llama.rope.dimension_count") {
        if rd as usize != config.head_dim {
            return Err(Error::Gguf("partial RoPE is not supported".into()));
        }
    }
    Ok((config, tokens))
}

/// The tokenizer's tensors: tokens, merges and token types.
fn push_tokenizer(g: &Gguf, c: &Config, tokens: &[String], out: &mut Out) -> Result<()> {
    out.strings("tok.tokens", tokens);
    out.strings("tok.merges", &g.get_str_array("tokenizer.ggml.merges")?);
    let types = g.get_i32_array("tokenizer.ggml.token_type")?;
    if types.len() != c.vocab {
        return Err(Error::Gguf("token_type length differs from the vocabulary".into()));
    }
    out.push("tok.types", Dtype::I32, vec![c.vocab], le32(&types));
    Ok(())
}

/// The model's weights in integer form: the (tied) embedding, each layer's norms and
/// projections, and the final norm.
fn push_weights(g: &Gguf, c: &Config, out: &mut Out) -> Result<()> {
    let dim = c.dim;
    q8_0(g, "token_embd.weight", c.vocab, dim, out, "embd")?;
    let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    for l in 0..c.n_layers {
        let s = |x: &str| format!("blk.{l}.{x}.weight");
        let d = |x: &str| format!("blk.{l}.{x}");
        norm(g, &s("attn_norm"), dim, 1.0, out, &d("attn_norm"))?;
        q4_1(g, &s("attn_q"), qd, dim, out, &d("wq"))?;
        q4_1(g, &s("attn_k"), kvd, dim, out, &d("wk"))?;
        q4_1(g, &s("attn_v"), kvd, dim, out, &d("wv"))?;
        q4_1(g, &s("attn_output"), dim, qd, out, &d("wo"))?;
        norm(g, &s("ffn_norm"), dim, 1.0, out, &d("ffn_norm"))?;
        q4_1(g, &s("ffn_gate"), c.hidden, dim, out, &d("w_gate"))?;
        q4_1(g, &s("ffn_up"), c.hidden, dim, out, &d("w_up"))?;
        q4_1(g, &s("ffn_down"), dim, c.hidden, out, &d("w_down"))?;
    }
    if g.tensor("output.weight").is_ok() {
        return Err(Error::Gguf("untied output projection is not supported".into()));
    }
    // Logits in log2 units: fold log2(e) into the final norm's gain.
    norm(g, "output_norm.weight", dim, std::f64::consts::LOG2_E, out, "out_norm")
}

/// The integer tables the engines share: RoPE, the two exp2 tables and SiLU.
fn push_tables(c: &Config, out: &mut Out) {
    let (cos, sin) = tables::rope(c.ctx, c.head_dim, c.rope_base);
    out.push("tab.rope_cos", Dtype::I16, vec![c.ctx, c.head_dim / 2], le16(&cos));
    out.push("tab.rope_sin", Dtype::I16, vec![c.ctx, c.head_dim / 2], le16(&sin));
    out.push(
        "tab.att_exp",
        Dtype::U32,
        vec![1 << tables::ATT_EXP_BITS],
        le32(&tables::exp2_table(tables::ATT_EXP_BITS, tables::ATT_P_FRAC)),
    );
    out.push(
        "tab.out_exp",
        Dtype::U32,
        vec![1 << tables::OUT_EXP_BITS],
        le32(&tables::exp2_table(tables::OUT_EXP_BITS, tables::OUT_P_FRAC)),
    );
    out.push(
        "tab.silu",
        Dtype::I32,
        vec![tables::SILU_ENTRIES],
        le32(&tables::silu()),
    );
}

impl Out {
    /// The pack's bytes: the tensors in the order pushed, and `meta` as JSON.
    fn serialize(&self, meta: &PackMeta) -> Result<Vec<u8>> {
        let meta_json = serde_json::to_string(meta).map_err(|e| Error::Pack(e.to_string()))?;
        let views: Vec<(String, TensorView)> = self
            .tensors
            .iter()
            .map(|(n, dt, sh, data)| {
                TensorView::new(*dt, sh.clone(), data)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::Pack(format!("{n}: {e}")))
            })
            .collect::<Result<_>>()?;
        let meta_map: HashMap<String, String> = [(META_KEY.to_string(), meta_json)].into_iter().collect();
        safetensors::serialize(views, Some(meta_map)).map_err(|e| Error::Pack(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decoding() {
        assert_eq!(f16_to_f64(0x3C00), 1.0);
        assert_eq!(f16_to_f64(0xC000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7BFF), 65504.0);
        assert!(f16_to_f64(0x7C00).is_nan());
    }

    #[test]
    fn row_exponent_is_largest_fitting() {
        for &(max, lim) in &[(4.78125, 8191.0), (0.0154, 2047.0), (1e-6, 8191.0), (3.0, 8191.0)] {
            let e = row_exponent(max, lim);
            assert!((max * 2f64.powi(e)).round() <= lim);
            assert!((max * 2f64.powi(e + 1)).round() > lim);
        }
        assert_eq!(row_exponent(0.0, 8191.0), 0);
    }
}
