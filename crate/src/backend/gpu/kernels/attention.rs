//! Attention and the KV cache: store, shift, attend.

#[cfg(doc)]
use crate::backend::cpu;
use crate::backend::gpu::buffers::{GpuBuf, GpuKv, GpuTables};
use crate::backend::gpu::device::{groups, Gpu, MAX_GROUPS, WG};
use crate::error::{Error, Result};
use crate::shaders;

impl Gpu {
    /// `shaders/kv_store.wgsl` ↔ [`cpu::kv_store`]: row `r` of `k`, `v` into cache row `dst[r]`.
    pub fn kv_store(&mut self, c: &GpuKv, k: &GpuBuf, v: &GpuBuf, dst: &[u32]) {
        let dst_buf = self.upload_rows("kv_store.dst", dst);
        let p = shaders::KvStoreParams {
            rows: k.rows as u32,
            cache_rows: c.rows as u32,
            ..Default::default()
        };
        let ov = [("HEAD_DIM", c.head_dim as u32), ("N_KV", c.n_kv as u32)];
        self.dispatch(
            &shaders::KV_STORE,
            &ov,
            &p,
            &[&k.buf, &v.buf, &dst_buf, &c.k, &c.kexp, &c.v],
            (groups(c.n_kv, WG), k.rows.max(1) as u32),
        );
    }

    /// `shaders/kv_shift.wgsl` ↔ [`cpu::kv_shift`]: cache rows `src..src + n` to
    /// `dst..dst + n` (`dst ≤ src`), keys re-rotated by `src − dst` positions, through
    /// `scratch` (a cache of at least `n` rows), since the two ranges may overlap.
    pub fn kv_shift(&mut self, c: &GpuKv, scratch: &GpuKv, src: usize, dst: usize, n: usize, t: &GpuTables) {
        if n == 0 {
            return;
        }
        let p = shaders::KvShiftParams {
            rows: n as u32,
            src: src as u32,
            cache_rows: c.rows as u32,
            delta: (src - dst) as u32,
        };
        let ov = [("HEAD_DIM", c.head_dim as u32), ("N_KV", c.n_kv as u32)];
        self.dispatch(
            &shaders::KV_SHIFT,
            &ov,
            &p,
            &[
                &c.k,
                &c.kexp,
                &c.v,
                &t.rope_cos,
                &t.rope_sin,
                &scratch.k,
                &scratch.kexp,
                &scratch.v,
            ],
            (groups(c.n_kv, WG), n as u32),
        );
        let (kv, e) = ((c.n_kv * c.head_dim * 2) as u64, (c.n_kv * 4) as u64);
        let enc = self.encoder();
        enc.copy_buffer_to_buffer(&scratch.k, 0, &c.k, dst as u64 * kv, n as u64 * kv);
        enc.copy_buffer_to_buffer(&scratch.kexp, 0, &c.kexp, dst as u64 * e, n as u64 * e);
        enc.copy_buffer_to_buffer(&scratch.v, 0, &c.v, dst as u64 * kv, n as u64 * kv);
    }

    /// Cache rows `src..src + n` copied to `dst..dst + n` through `scratch` (a cache of at
    /// least `n` rows; a buffer cannot be copied onto itself): a slot moved to another place
    /// ([`crate::backend::Backend::kv_place`]). The CPU's twin is a `copy_within`.
    pub fn kv_copy(&mut self, c: &GpuKv, scratch: &GpuKv, src: usize, dst: usize, n: usize) {
        if n == 0 {
            return;
        }
        let (kv, e) = ((c.n_kv * c.head_dim * 2) as u64, (c.n_kv * 4) as u64);
        let n = n as u64;
        let enc = self.encoder();
        for (buf, tmp, w) in [
            (&c.k, &scratch.k, kv),
            (&c.kexp, &scratch.kexp, e),
            (&c.v, &scratch.v, kv),
        ] {
            enc.copy_buffer_to_buffer(buf, src as u64 * w, tmp, 0, n * w);
            enc.copy_buffer_to_buffer(tmp, 0, buf, dst as u64 * w, n * w);
        }
    }

    /// `shaders/attention.wgsl` ↔ [`cpu::attention_row`] on every row: row `r` attends over
    /// positions `0..=pos[r]` of its sequence, at cache rows `base[r] + j`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: &GpuBuf,
        c: &GpuKv,
        base: &[u32],
        pos: &[u32],
        cache_len: usize,
        n_heads: usize,
        t: &GpuTables,
    ) -> Result<GpuBuf> {
        if c.head_dim > 256 || !c.head_dim.is_multiple_of(2) || !n_heads.is_multiple_of(c.n_kv) {
            return Err(Error::InvalidArgument(format!(
                "attention: head_dim {} (even, ≤ 256), {n_heads} heads over {} kv heads",
                c.head_dim, c.n_kv
            )));
        }
        let rows = q.rows;
        let info: Vec<u32> = pos.iter().zip(base).flat_map(|(&p, &b)| [p, b]).collect();
        let info_buf = self.upload_rows("attention.rowinfo", &info);
        let out = GpuBuf {
            buf: self.buffer("attention.out", rows * q.width * 4),
            rows,
            width: q.width,
            deferred_logits: None,
        };
        // Scores of up to `chunk` rows at once: [chunk, heads, cache_len] u32 ≤ CHUNK_BYTES.
        let per_row = n_heads * cache_len * 4;
        let chunk = (self.chunk_bytes / per_row)
            .clamp(1, MAX_GROUPS as usize)
            .min(rows.max(1));
        let need = (chunk * per_row) as u64;
        if need > self.limits.max_storage_buffer_binding_size {
            return Err(Error::GpuLimits {
                adapter: self.info.name.clone(),
                what: format!("attention scores need a {need}-byte buffer"),
            });
        }
        let scratch = match &self.scratch {
            Some(s) if s.size() >= need => s.clone(),
            _ => {
                let s = self.fresh("attention.scratch", need as usize);
                self.scratch = Some(s.clone());
                s
            }
        };
        let ov = [
            ("HEAD_DIM", c.head_dim as u32),
            ("N_HEADS", n_heads as u32),
            ("N_KV", c.n_kv as u32),
        ];
        let mut row0 = 0;
        while row0 < rows {
            let n = chunk.min(rows - row0);
            let p = shaders::AttentionParams {
                rows: rows as u32,
                row0: row0 as u32,
                cache_len: cache_len as u32,
                _pad: 0,
            };
            self.dispatch(
                &shaders::ATTENTION,
                &ov,
                &p,
                &[&q.buf, &info_buf, &c.k, &c.kexp, &c.v, &t.att_exp, &scratch, &out.buf],
                (n_heads as u32, n as u32),
            );
            row0 += n;
        }
        Ok(out)
    }
}
