//! The lmz model pack: one safetensors file holding the config, the tokenizer, the integer
//! weights and scales, and the lookup tables. Layout in `docs/MODEL.md`.
//!
//! The pack is what every engine loads (native, wasm, GPU upload); its SHA-256 is the model
//! fingerprint that compressed files record. Reading is from bytes (no file system) and
//! checks every shape against the config, so a damaged pack is an error, never a panic.

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const PACK_FORMAT: &str = "lmz-pack";
pub const PACK_VERSION: u32 = 1;
/// Key of the single `__metadata__` entry (one key keeps the header byte-for-byte reproducible).
pub const META_KEY: &str = "lmz";
/// The pinned model pack's file name (the CLI's cache, the browser package's default URL).
pub const PACK_FILE: &str = "smollm2-135m.lmz.safetensors";
/// SHA-256 of the pinned model pack: what the deterministic converter produces from the
/// pinned GGUF, and the fingerprint every `.lmz` file made with it names. Here rather than in
/// the CLI's `fetch` so that the wasm build (which checks downloaded weights against it) has it.
pub const PACK_SHA256: &str = "0dd83629970b2c41365ef860ea33f57dd0449b8623b0067441c37652232a5348";
/// [`PACK_SHA256`] as the 32 bytes a [`Model::fingerprint`] holds (a test checks they agree).
pub const PACK_SHA256_BYTES: [u8; 32] = [
    0x0d, 0xd8, 0x36, 0x29, 0x97, 0x0b, 0x2c, 0x41, 0x36, 0x5e, 0xf8, 0x60, 0xea, 0x33, 0xf5, 0x7d, 0xd0, 0x44, 0x9b,
    0x86, 0x23, 0xb0, 0x06, 0x74, 0x41, 0xc3, 0x76, 0x52, 0x23, 0x2a, 0x53, 0x48,
];

/// Model hyper-parameters (from the GGUF), plus the integer constants derived from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub name: String,
    pub n_layers: usize,
    /// Residual width.
    pub dim: usize,
    /// FFN inner width.
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// Longest context the model was trained for (and the RoPE tables cover).
    pub ctx: usize,
    pub rope_base: f64,
    pub bos: u32,
    pub eos: u32,
    /// The token that separated documents in pretraining (`<|endoftext|>` when the vocabulary
    /// has it, else BOS): the context-only token every window starts with.
    pub doc_start: u32,
    /// RMSNorm epsilon as round(eps · 2^24).
    pub norm_eps_q24: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackMeta {
    pub format: String,
    pub version: u32,
    pub config: Config,
    /// sha256 of the GGUF this pack was converted from.
    pub source_sha256: String,
    pub source: String,
    pub license: String,
}

/// Q4_1 weights in integer form, `[rows, cols]`, blocks of 32 along `cols`.
/// Weight `W[r][c] = (d[r][b] · (nib[r][c] − 8) + m[r][b]) · 2^-e[r]` with `b = c / 32`.
#[derive(Debug, Clone)]
pub struct Q4Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `[rows, cols/2]`: ggml's nibble order: byte j of a block holds element j (low nibble)
    /// and element j+16 (high nibble).
    pub nib: Vec<u8>,
    /// `[rows, cols/32]`, |d| ≤ 8191.
    pub d: Vec<i16>,
    /// `[rows, cols/32]`, the block offset re-centred on nibble 8 (m + 8d), |m| ≤ 8191.
    pub m: Vec<i16>,
    /// `[rows]`, the row's power-of-two exponent.
    pub e: Vec<i8>,
}

/// Q8_0 weights in integer form, `[rows, cols]`: `W[r][c] = d[r][b] · q[r][c] · 2^-e[r]`.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `[rows, cols]`
    pub q: Vec<i8>,
    /// `[rows, cols/32]`, |d| ≤ 2047.
    pub d: Vec<i16>,
    /// `[rows]`
    pub e: Vec<i8>,
}

/// RMSNorm gain in fixed point: `g = g_int · 2^-g_exp`; the normalised-and-scaled output
/// is produced with `z_frac` fraction bits (chosen so |z| < 2^30).
#[derive(Debug, Clone)]
pub struct NormWeight {
    /// `[dim]`, |g| < 2^15.
    pub g: Vec<i32>,
    pub g_exp: i32,
    pub z_frac: i32,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: NormWeight,
    /// `[n_heads·head_dim, dim]`
    pub wq: Q4Matrix,
    /// `[n_kv_heads·head_dim, dim]`
    pub wk: Q4Matrix,
    /// `[n_kv_heads·head_dim, dim]`
    pub wv: Q4Matrix,
    /// `[dim, n_heads·head_dim]`
    pub wo: Q4Matrix,
    pub ffn_norm: NormWeight,
    /// `[hidden, dim]`
    pub w_gate: Q4Matrix,
    /// `[hidden, dim]`
    pub w_up: Q4Matrix,
    /// `[dim, hidden]`
    pub w_down: Q4Matrix,
}

#[derive(Debug, Clone)]
pub struct Tables {
    /// `[ctx, head_dim/2]` Q1.14
    pub rope_cos: Vec<i16>,
    /// `[ctx, head_dim/2]` Q1.14
    pub rope_sin: Vec<i16>,
    /// `[256]` round(2^15 · 2^(-f/256))
    pub att_exp: Vec<u32>,
    /// `[1024]` round(2^24 · 2^(-f/1024))
    pub out_exp: Vec<u32>,
    /// `[2049]` round(2^10 · silu(i/64)), i in -1024..=1024
    pub silu: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embedding, also the output projection (tied): `[vocab, dim]`.
    pub embed: Q8Matrix,
    pub layers: Vec<Layer>,
    /// Final norm; its gain is pre-multiplied by log2(e) so logits come out in log2 units.
    pub out_norm: NormWeight,
    pub tables: Tables,
}

#[derive(Debug, Clone)]
pub struct TokenizerData {
    /// GPT-2 byte-level token strings, as in the GGUF.
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    pub token_types: Vec<i32>,
}

/// A loaded model pack.
#[derive(Debug, Clone)]
pub struct Model {
    pub meta: PackMeta,
    pub tokenizer: TokenizerData,
    pub weights: Weights,
    /// sha256 of the pack file.
    pub fingerprint: [u8; 32],
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn perr<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Pack(msg.into()))
}

struct Reader<'a> {
    st: SafeTensors<'a>,
}

impl<'a> Reader<'a> {
    fn raw(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&'a [u8]> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| Error::Pack(format!("missing tensor {name:?}")))?;
        if t.dtype() != dtype || t.shape() != shape {
            return perr(format!(
                "tensor {name:?} is {:?}{:?}, expected {dtype:?}{shape:?}",
                t.dtype(),
                t.shape()
            ));
        }
        Ok(t.data())
    }
    fn u8(&self, name: &str, shape: &[usize]) -> Result<Vec<u8>> {
        Ok(self.raw(name, Dtype::U8, shape)?.to_vec())
    }
    fn i8(&self, name: &str, shape: &[usize]) -> Result<Vec<i8>> {
        Ok(self.raw(name, Dtype::I8, shape)?.iter().map(|&b| b as i8).collect())
    }
    fn i16(&self, name: &str, shape: &[usize]) -> Result<Vec<i16>> {
        Ok(self
            .raw(name, Dtype::I16, shape)?
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
    fn i32(&self, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
        Ok(self
            .raw(name, Dtype::I32, shape)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn u32(&self, name: &str, shape: &[usize]) -> Result<Vec<u32>> {
        Ok(self
            .raw(name, Dtype::U32, shape)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    /// Strings stored as concatenated UTF-8 bytes plus `n+1` offsets.
    fn strings(&self, name: &str) -> Result<Vec<String>> {
        let t = self
            .st
            .tensor(&format!("{name}.offsets"))
            .map_err(|_| Error::Pack(format!("missing tensor {name}.offsets")))?;
        let n = match t.shape() {
            [n] if *n >= 1 => *n,
            _ => return perr(format!("{name}.offsets has a bad shape")),
        };
        let offs = self.u32(&format!("{name}.offsets"), &[n])?;
        let bytes = self
            .st
            .tensor(&format!("{name}.bytes"))
            .map_err(|_| Error::Pack(format!("missing tensor {name}.bytes")))?;
        if bytes.dtype() != Dtype::U8 {
            return perr(format!("{name}.bytes is not U8"));
        }
        let b = bytes.data();
        let mut out = Vec::with_capacity(n - 1);
        for w in offs.windows(2) {
            let (s, e) = (w[0] as usize, w[1] as usize);
            if s > e || e > b.len() {
                return perr(format!("{name}: offsets out of order or out of range"));
            }
            out.push(
                String::from_utf8(b[s..e].to_vec()).map_err(|_| Error::Pack(format!("{name}: entry is not UTF-8")))?,
            );
        }
        Ok(out)
    }
    fn q4(&self, name: &str, rows: usize, cols: usize) -> Result<Q4Matrix> {
        let nb = cols / 32;
        let m = Q4Matrix {
            rows,
            cols,
            nib: self.u8(&format!("{name}.nib"), &[rows, cols / 2])?,
            d: self.i16(&format!("{name}.d"), &[rows, nb])?,
            m: self.i16(&format!("{name}.m"), &[rows, nb])?,
            e: self.i8(&format!("{name}.e"), &[rows])?,
        };
        if m.d.iter().chain(&m.m).any(|v| v.unsigned_abs() > 8191) {
            return perr(format!("{name}: block scale out of the 14-bit range"));
        }
        Ok(m)
    }
    fn norm(&self, name: &str, dim: usize) -> Result<NormWeight> {
        let g = self.i32(&format!("{name}.g"), &[dim])?;
        let meta = self.i32(&format!("{name}.meta"), &[2])?;
        if g.iter().any(|v| v.unsigned_abs() >= 1 << 15)
            || !(0..=40).contains(&meta[0])
            || !(-8..=40).contains(&meta[1])
        {
            return perr(format!("{name}: gain or exponents out of range"));
        }
        Ok(NormWeight {
            g,
            g_exp: meta[0],
            z_frac: meta[1],
        })
    }
}

impl Model {
    /// Parses and validates a pack. `bytes` is the whole file.
    pub fn from_pack_bytes(bytes: &[u8]) -> Result<Model> {
        Self::from_hashed_pack(bytes, sha256(bytes))
    }

    /// [`Model::from_pack_bytes`] for a caller that has already computed the pack's SHA-256
    /// (`fingerprint`, which files made with the model will name): the browser package hashes
    /// the pack with the browser's own SHA-256 before it is used, and hashing 99 MB again in
    /// wasm would cost more than the parsing. A wrong `fingerprint` is not detected here.
    pub fn from_hashed_pack(bytes: &[u8], fingerprint: [u8; 32]) -> Result<Model> {
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| Error::Pack(format!("not a safetensors file: {e}")))?;
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| Error::Pack("no lmz metadata (is this an lmz model pack?)".into()))?;
        let meta: PackMeta = serde_json::from_str(meta_json).map_err(|e| Error::Pack(format!("bad metadata: {e}")))?;
        if meta.format != PACK_FORMAT {
            return perr(format!("format is {:?}, not {PACK_FORMAT:?}", meta.format));
        }
        if meta.version != PACK_VERSION {
            return perr(format!(
                "pack version {} is not supported (this build reads version {PACK_VERSION}); re-run `lmz model fetch`",
                meta.version
            ));
        }
        let c = &meta.config;
        check_config(c)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Pack(format!("not a safetensors file: {e}")))?;
        let r = Reader { st };
        let (dim, hid, kvd, qd) = (c.dim, c.hidden, c.n_kv_heads * c.head_dim, c.n_heads * c.head_dim);
        let tokens = r.strings("tok.tokens")?;
        let merges = r.strings("tok.merges")?;
        if tokens.len() != c.vocab {
            return perr(format!(
                "tokenizer has {} tokens, config says {}",
                tokens.len(),
                c.vocab
            ));
        }
        let token_types = r.i32("tok.types", &[c.vocab])?;
        let embed = Q8Matrix {
            rows: c.vocab,
            cols: dim,
            q: r.i8("embd.q", &[c.vocab, dim])?,
            d: r.i16("embd.d", &[c.vocab, dim / 32])?,
            e: r.i8("embd.e", &[c.vocab])?,
        };
        if embed.d.iter().any(|v| v.unsigned_abs() > 2047) {
            return perr("embd.d out of the 12-bit range");
        }
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let p = |s: &str| format!("blk.{l}.{s}");
            layers.push(Layer {
                attn_norm: r.norm(&p("attn_norm"), dim)?,
                wq: r.q4(&p("wq"), qd, dim)?,
                wk: r.q4(&p("wk"), kvd, dim)?,
                wv: r.q4(&p("wv"), kvd, dim)?,
                wo: r.q4(&p("wo"), dim, qd)?,
                ffn_norm: r.norm(&p("ffn_norm"), dim)?,
                w_gate: r.q4(&p("w_gate"), hid, dim)?,
                w_up: r.q4(&p("w_up"), hid, dim)?,
                w_down: r.q4(&p("w_down"), dim, hid)?,
            });
        }
        let half = c.head_dim / 2;
        let tables = Tables {
            rope_cos: r.i16("tab.rope_cos", &[c.ctx, half])?,
            rope_sin: r.i16("tab.rope_sin", &[c.ctx, half])?,
            att_exp: r.u32("tab.att_exp", &[1 << crate::tables::ATT_EXP_BITS])?,
            out_exp: r.u32("tab.out_exp", &[1 << crate::tables::OUT_EXP_BITS])?,
            silu: r.i32("tab.silu", &[crate::tables::SILU_ENTRIES])?,
        };
        if tables.att_exp.iter().any(|&v| v > 1 << 15)
            || tables.out_exp.iter().any(|&v| v > 1 << 24)
            || tables
                .rope_cos
                .iter()
                .chain(&tables.rope_sin)
                .any(|v| v.unsigned_abs() > 1 << 14)
        {
            return perr("a lookup table is out of range");
        }
        let out_norm = r.norm("out_norm", dim)?;
        Ok(Model {
            tokenizer: TokenizerData {
                tokens,
                merges,
                token_types,
            },
            weights: Weights {
                embed,
                layers,
                out_norm,
                tables,
            },
            meta,
            fingerprint,
        })
    }

    pub fn config(&self) -> &Config {
        &self.meta.config
    }
}

/// The limits the integer kernels' overflow proofs assume (see ARCHITECTURE.md), the CPU's
/// and the WGSL kernels' alike: dim ≤ 1024 (RMSNorm's u32 sum of squares), every matmul row
/// at most 1536 columns = 48 blocks of 32 (the Q4 kernels' split accumulator, `wide.wgsl`),
/// the only Q8 matrix (the embedding) dim ≤ 1024 columns = 32 blocks, vocab < 2^22 (the
/// frequency kernel's 2^24 total with every symbol ≥ 1). Checked when a pack is loaded, so
/// no engine ever runs outside them.
pub fn check_config(c: &Config) -> Result<()> {
    let ok = c.n_layers >= 1
        && c.n_layers <= 256
        && c.dim.is_multiple_of(32)
        && c.hidden.is_multiple_of(32)
        && (32..=1024).contains(&c.dim) // RMSNorm's u32 sum of squares: dim · 2047² < 2^32
        && c.hidden <= 1536 // matmul wide accumulator: cols/32 · 2^25 < 2^31
        && c.n_heads * c.head_dim <= 1536
        && c.head_dim.is_multiple_of(2)
        && c.head_dim <= 128
        && c.n_kv_heads >= 1
        && c.n_heads.is_multiple_of(c.n_kv_heads)
        && (c.n_heads * c.head_dim).is_multiple_of(32)
        && c.vocab >= 2
        && c.vocab < 1 << 22
        && (c.doc_start as usize) < c.vocab
        && (c.bos as usize) < c.vocab // the frequency table gives every symbol ≥ 1 out of 2^24
        && (1..=8192).contains(&c.ctx); // attention: Σp' · |V| < 2^31 needs ctx ≤ 2^13
    if !ok {
        return perr(format!("config outside the limits this engine supports: {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::{tiny_pack, Rng, TinyShape};

    #[test]
    fn damaged_packs_are_errors_not_panics() {
        let good = tiny_pack(11, TinyShape::default()).unwrap();
        assert!(Model::from_pack_bytes(&good).is_ok());
        let mut r = Rng(12);
        // Truncations, including inside the header.
        for n in (0..good.len()).step_by(good.len() / 300 + 1).chain(0..64) {
            assert!(Model::from_pack_bytes(&good[..n]).is_err(), "truncated to {n} bytes");
        }
        // Random bit flips anywhere: may still parse (a flipped weight is a valid weight),
        // but must never panic.
        for _ in 0..300 {
            let mut b = good.clone();
            let i = r.below(b.len() as u64) as usize;
            b[i] ^= 1 << r.below(8);
            let _ = Model::from_pack_bytes(&b);
        }
        // A header length pointing far past the end.
        let mut b = good.clone();
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Model::from_pack_bytes(&b).is_err());
        assert!(Model::from_pack_bytes(b"").is_err());
    }

    #[test]
    fn the_pinned_fingerprint_in_bytes_is_the_hex_one() {
        assert_eq!(hex(&PACK_SHA256_BYTES), PACK_SHA256);
    }

    #[test]
    fn wrong_version_and_format_are_refused_with_a_reason() {
        let good = tiny_pack(13, TinyShape::default()).unwrap();
        let text = String::from_utf8_lossy(&good[..4096]).to_string();
        assert!(text.contains("\\\"version\\\":1"));
        let swap = |from: &str, to: &str| {
            let i = good.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
            let mut b = good.clone();
            b[i..i + from.len()].copy_from_slice(to.as_bytes());
            Model::from_pack_bytes(&b).unwrap_err().to_string()
        };
        assert!(swap("\\\"version\\\":1", "\\\"version\\\":9").contains("pack version 9"));
        assert!(swap("lmz-pack", "lmz-pick").contains("not \"lmz-pack\""));
    }
}
