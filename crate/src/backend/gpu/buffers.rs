//! Typed GPU buffers, and their uploads and downloads.

use crate::backend::cpu::{KvCache, QAct};
#[cfg(doc)]
use crate::backend::Backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
use crate::pack::{NormWeight, Q4Matrix, Q8Matrix, Tables};

use super::device::Gpu;
use super::pool::Buf;

/// An `i32` activation matrix `[rows, width]` on the GPU.
#[derive(Debug, Clone)]
pub struct GpuBuf {
    pub(super) buf: Buf,
    pub rows: usize,
    pub width: usize,
    /// Logits are not materialised (a 2048-row window of 49,152 logits is 400 MB): the
    /// engine keeps the quantised final activations and makes the logits a chunk of rows
    /// at a time in [`Backend::freqs`].
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // read by the native freqs only
    pub(super) deferred_logits: Option<GpuQ>,
}

/// int8 block-quantised activations on the GPU (see [`QAct`]).
#[derive(Debug, Clone)]
pub struct GpuQ {
    /// `[rows, width/4]`, 4 × i8 per word
    pub(super) q: Buf,
    /// `[rows, width/32]`, `a | sum << 16`
    pub(super) scale_sum: Buf,
    /// `[rows]`
    pub(super) exp: Buf,
    pub rows: usize,
    pub width: usize,
}

/// A Q4_1 matrix on the GPU, transposed so that neighbouring invocations (rows) read
/// neighbouring words.
#[derive(Debug)]
pub struct GpuQ4 {
    /// `[cols/8, rows]`, the pack's nibble bytes, 4 per word
    pub(super) nib: wgpu::Buffer,
    /// `[cols/32, rows]`, `d | m << 16`
    pub(super) dm: wgpu::Buffer,
    /// `[rows]`
    pub(super) e: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
}

/// A Q8_0 matrix on the GPU (the token embedding, also the tied output projection),
/// transposed so that neighbouring invocations (rows) read neighbouring words.
#[derive(Debug)]
pub struct GpuQ8 {
    /// `[cols/4, rows]`, 4 × i8 per word
    pub(super) q: wgpu::Buffer,
    /// `[cols/32, rows]`
    pub(super) d: wgpu::Buffer,
    /// `[rows]`
    pub(super) e: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
}

/// An RMSNorm gain on the GPU.
#[derive(Debug)]
pub struct GpuNorm {
    /// `[dim]`
    pub(super) g: wgpu::Buffer,
    pub g_exp: i32,
    pub z_frac: i32,
}

/// The lookup tables on the GPU.
#[derive(Debug)]
pub struct GpuTables {
    /// `[ctx, head_dim/2]` each, as i32
    pub(super) rope_cos: wgpu::Buffer,
    pub(super) rope_sin: wgpu::Buffer,
    /// `[256]`
    pub(super) att_exp: wgpu::Buffer,
    /// `[1024]`
    pub(super) out_exp: wgpu::Buffer,
    /// `[2049]`
    pub(super) silu: wgpu::Buffer,
    pub(super) silu_centre: i32,
    /// Positions the RoPE tables cover.
    pub ctx: usize,
}

/// One layer's KV cache on the GPU: `rows` = slots · cache_len.
#[derive(Debug)]
pub struct GpuKv {
    /// `[rows, n_kv·head_dim/2]` i16 pairs
    pub(super) k: wgpu::Buffer,
    /// `[rows, n_kv]`
    pub(super) kexp: wgpu::Buffer,
    /// `[rows, n_kv·head_dim/2]` i16 pairs
    pub(super) v: wgpu::Buffer,
    pub rows: usize,
    pub n_kv: usize,
    pub head_dim: usize,
}

fn words_i8(v: &[i8]) -> Vec<u32> {
    v.chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (k, &b)| w | ((b as u8 as u32) << (8 * k)))
        })
        .collect()
}

fn words_u8(v: &[u8]) -> Vec<u32> {
    v.chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (k, &b)| w | ((b as u32) << (8 * k)))
        })
        .collect()
}

/// `[rows, n]` → `[n, rows]`.
fn transpose<T: Copy>(v: &[T], rows: usize) -> Vec<T> {
    let n = v.len() / rows.max(1);
    (0..v.len()).map(|i| v[(i % rows) * n + i / rows]).collect()
}

fn pairs_i16(v: &[i16]) -> Vec<u32> {
    v.chunks(2)
        .map(|c| (c[0] as u16 as u32) | ((c.get(1).copied().unwrap_or(0) as u16 as u32) << 16))
        .collect()
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))] // used by the native read_kv
fn unpairs_i16(w: &[u32], n: usize) -> Vec<i16> {
    w.iter()
        .flat_map(|&x| [x as u16 as i16, (x >> 16) as u16 as i16])
        .take(n)
        .collect()
}

impl Gpu {
    // --- uploads and downloads of typed buffers ---

    pub fn upload_buf(&self, data: &[i32], width: usize) -> GpuBuf {
        GpuBuf {
            buf: Buf::plain(self.upload("activations", data)),
            rows: data.len() / width.max(1),
            width,
            deferred_logits: None,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_buf(&mut self, x: &GpuBuf) -> Result<Vec<i32>> {
        self.read(&x.buf.clone(), 0, x.rows * x.width)
    }

    pub fn upload_q(&self, a: &QAct) -> GpuQ {
        let meta: Vec<u32> =
            a.a.iter()
                .zip(&a.sum)
                .map(|(&m, &s)| m as u32 | ((s as u32) << 16))
                .collect();
        GpuQ {
            q: Buf::plain(self.upload("act.q", &words_i8(&a.q))),
            scale_sum: Buf::plain(self.upload("act.scale_sum", &meta)),
            exp: Buf::plain(self.upload("act.exp", &a.exp)),
            rows: a.tokens,
            width: a.width,
        }
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
        let dm: Vec<u32> =
            w.d.iter()
                .zip(&w.m)
                .map(|(&d, &m)| d as u16 as u32 | ((m as u16 as u32) << 16))
                .collect();
        let e: Vec<i32> = w.e.iter().map(|&e| e as i32).collect();
        let nib = transpose(&words_u8(&w.nib), w.rows);
        GpuQ4 {
            nib: self.upload("q4.nib", &nib),
            dm: self.upload("q4.dm", &transpose(&dm, w.rows)),
            e: self.upload("q4.e", &e),
            rows: w.rows,
            cols: w.cols,
        }
    }

    /// Transposed (`[cols/4, rows]` words, `[cols/32, rows]` scales) for `matmul_q8`; `embed`
    /// reads the same layout.
    pub fn upload_q8(&self, w: &Q8Matrix) -> GpuQ8 {
        let d: Vec<i32> = w.d.iter().map(|&d| d as i32).collect();
        let e: Vec<i32> = w.e.iter().map(|&e| e as i32).collect();
        GpuQ8 {
            q: self.upload("q8.q", &transpose(&words_i8(&w.q), w.rows)),
            d: self.upload("q8.d", &transpose(&d, w.rows)),
            e: self.upload("q8.e", &e),
            rows: w.rows,
            cols: w.cols,
        }
    }

    pub fn upload_norm(&self, g: &NormWeight) -> GpuNorm {
        GpuNorm {
            g: self.upload("norm.g", &g.g),
            g_exp: g.g_exp,
            z_frac: g.z_frac,
        }
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
        GpuKv {
            k: self.fresh("kv.k", rows * kvd * 2),
            kexp: self.fresh("kv.kexp", rows * n_kv * 4),
            v: self.fresh("kv.v", rows * kvd * 2),
            rows,
            n_kv,
            head_dim,
        }
    }

    pub fn upload_kv(&self, c: &KvCache, n_kv: usize, head_dim: usize) -> GpuKv {
        GpuKv {
            k: self.upload("kv.k", &pairs_i16(&c.k)),
            kexp: self.upload("kv.kexp", &c.k_exp),
            v: self.upload("kv.v", &pairs_i16(&c.v)),
            rows: c.k_exp.len() / n_kv,
            n_kv,
            head_dim,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_kv(&mut self, c: &GpuKv) -> Result<KvCache> {
        let n = c.rows * c.n_kv * c.head_dim;
        let k: Vec<u32> = self.read(&c.k.clone(), 0, n / 2)?;
        let v: Vec<u32> = self.read(&c.v.clone(), 0, n / 2)?;
        Ok(KvCache {
            k: unpairs_i16(&k, n),
            k_exp: self.read(&c.kexp.clone(), 0, c.rows * c.n_kv)?,
            v: unpairs_i16(&v, n),
        })
    }
}
