//! Frequency tables and the ranges of coded symbols.

use crate::backend::gpu::buffers::{GpuBuf, GpuTables};
use crate::backend::gpu::device::{grid, Gpu};
use crate::backend::gpu::pool::Buf;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
use crate::shaders;

impl Gpu {
    /// `shaders/freq.wgsl` ↔ [`crate::freq::freq_table`] on every row: `[rows, vocab]` u32.
    pub fn freq(&mut self, logits: &GpuBuf, t: &GpuTables) -> Buf {
        let out = self.buffer("freq.out", logits.rows * logits.width * 4);
        let p = shaders::FreqParams {
            rows: logits.rows as u32,
            vocab: logits.width as u32,
            ..Default::default()
        };
        self.dispatch(
            &shaders::FREQ,
            &[],
            &p,
            &[&logits.buf, &t.out_exp, &out],
            grid(logits.rows),
        );
        out
    }

    /// `shaders/ranges.wgsl` ↔ [`crate::coder::cum_freq`]: `(cum, freq)` of `symbols[r]` in
    /// row `r` of the tables `freq` (`[rows, vocab]`, made by [`Gpu::freq`]), `[rows, 2]`
    /// words. Each symbol must be below `vocab` (the kernel clamps, the engine checks).
    pub fn ranges(&mut self, freq: &wgpu::Buffer, rows: usize, vocab: usize, symbols: &[u32]) -> Buf {
        let sym = self.upload("ranges.symbols", symbols);
        let out = self.buffer("ranges.out", rows * 2 * 4);
        let p = shaders::FreqParams {
            rows: rows as u32,
            vocab: vocab as u32,
            ..Default::default()
        };
        self.dispatch(&shaders::RANGES, &[], &p, &[freq, &sym, &out], grid(rows));
        out
    }

    /// Frequency tables of `logits`, read back ([`Gpu::freq`] then a read).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_freq(&mut self, logits: &GpuBuf, t: &GpuTables) -> Result<Vec<u32>> {
        let f = self.freq(logits, t);
        self.read(&f, 0, logits.rows * logits.width)
    }
}
