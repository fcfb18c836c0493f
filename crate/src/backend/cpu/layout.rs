//! The CPU engine's weight layout, made when the engine is built: rows in interleaved groups
//! of [`GROUP`], the operand of the group kernels of [`super::simd`].

use crate::pack::{Q4Matrix, Q8Matrix};

/// Rows per interleaved group.
pub const GROUP: usize = 8;

/// A Q4_1 matrix in the CPU engine's layout, chosen when the engine is built: rows in groups
/// of 8, interleaved so that one 32-byte load holds 4 consecutive weights of each of the 8
/// rows (an 8-lane kernel's operand, one lane per row: no horizontal sums). Rows after the
/// last full group stay in the pack's layout (`tail`). Same numbers as the pack's matrix.
#[derive(Debug, Clone)]
pub struct CpuQ4 {
    pub rows: usize,
    pub cols: usize,
    /// `[groups, blocks, 4, 32]`: for the block's steps `2p`, `2p+1` (elements `8p..8p+4`
    /// and `8p+4..8p+8`), byte `4i + e` holds row `i`'s element `8p + e` in its low nibble and
    /// element `8p + 4 + e` in its high nibble.
    pub w: Vec<u8>,
    /// `[groups, blocks, 8]`
    pub d: Vec<i16>,
    /// `[groups, blocks, 8]`
    pub m: Vec<i16>,
    /// `[groups·8]`
    pub e: Vec<i8>,
    pub tail: Q4Matrix,
}

/// Element `j` (0..32) of a block's nibbles in ggml's order.
#[inline(always)]
fn nib_at(blk: &[u8], j: usize) -> u8 {
    if j < 16 {
        blk[j] & 15
    } else {
        blk[j - 16] >> 4
    }
}

impl CpuQ4 {
    pub fn new(w: &Q4Matrix) -> CpuQ4 {
        let (nb, groups) = (w.cols / 32, w.rows / GROUP);
        let mut out = CpuQ4 {
            rows: w.rows,
            cols: w.cols,
            w: vec![0; groups * nb * 128],
            d: vec![0; groups * nb * GROUP],
            m: vec![0; groups * nb * GROUP],
            e: w.e[..groups * GROUP].to_vec(),
            tail: tail_q4(w, groups * GROUP),
        };
        for g in 0..groups {
            for b in 0..nb {
                let dst = &mut out.w[(g * nb + b) * 128..(g * nb + b + 1) * 128];
                for i in 0..GROUP {
                    let r = g * GROUP + i;
                    let blk = &w.nib[r * w.cols / 2 + 16 * b..r * w.cols / 2 + 16 * (b + 1)];
                    for p in 0..4 {
                        for e in 0..4 {
                            dst[32 * p + 4 * i + e] = nib_at(blk, 8 * p + e) | nib_at(blk, 8 * p + 4 + e) << 4;
                        }
                    }
                    out.d[(g * nb + b) * GROUP + i] = w.d[r * nb + b];
                    out.m[(g * nb + b) * GROUP + i] = w.m[r * nb + b];
                }
            }
        }
        out
    }

    /// Row `i` of group `g`, block `b`, as the pack's 16 nibble bytes (ggml order).
    #[cfg(test)]
    pub(super) fn block(&self, g: usize, i: usize, b: usize) -> [u8; 16] {
        let nb = self.cols / 32;
        let src = &self.w[(g * nb + b) * 128..(g * nb + b + 1) * 128];
        let mut el = [0u8; 32];
        for p in 0..4 {
            for e in 0..4 {
                let v = src[32 * p + 4 * i + e];
                el[8 * p + e] = v & 15;
                el[8 * p + 4 + e] = v >> 4;
            }
        }
        std::array::from_fn(|j| el[j] | el[j + 16] << 4)
    }
}

fn tail_q4(w: &Q4Matrix, from: usize) -> Q4Matrix {
    let (c, nb) = (w.cols, w.cols / 32);
    Q4Matrix {
        rows: w.rows - from,
        cols: c,
        nib: w.nib[from * c / 2..].to_vec(),
        d: w.d[from * nb..].to_vec(),
        m: w.m[from * nb..].to_vec(),
        e: w.e[from..].to_vec(),
    }
}

/// A Q8_0 matrix in the CPU engine's layout: as [`CpuQ4`], one byte per weight:
/// `[groups, blocks, 8 steps, 32]` with byte `4i + e` of step `k` = row `i`'s element `4k + e`.
#[derive(Debug, Clone)]
pub struct CpuQ8 {
    pub rows: usize,
    pub cols: usize,
    pub q: Vec<i8>,
    /// `[groups, blocks, 8]`
    pub d: Vec<i16>,
    /// `[groups·8]`
    pub e: Vec<i8>,
    /// `[groups, blocks, 8]`: Σ of the row's 32 weights in the block (|·| ≤ 4064), for the
    /// relaxed-SIMD kernel (which sums `w·(x + 128)`); empty in every other build.
    pub ws: Vec<i16>,
    pub tail: Q8Matrix,
}

impl CpuQ8 {
    pub fn new(w: &Q8Matrix) -> CpuQ8 {
        let (c, nb, groups) = (w.cols, w.cols / 32, w.rows / GROUP);
        let from = groups * GROUP;
        let tail = Q8Matrix {
            rows: w.rows - from,
            cols: c,
            q: w.q[from * c..].to_vec(),
            d: w.d[from * nb..].to_vec(),
            e: w.e[from..].to_vec(),
        };
        let sums = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));
        let mut out = CpuQ8 {
            rows: w.rows,
            cols: c,
            q: vec![0; groups * GROUP * c],
            d: vec![0; groups * nb * GROUP],
            e: w.e[..from].to_vec(),
            ws: vec![0; if sums { groups * nb * GROUP } else { 0 }],
            tail,
        };
        for g in 0..groups {
            for b in 0..nb {
                for i in 0..GROUP {
                    let r = g * GROUP + i;
                    for j in 0..32 {
                        out.q[(g * nb + b) * 256 + 32 * (j / 4) + 4 * i + j % 4] = w.q[r * c + 32 * b + j];
                    }
                    out.d[(g * nb + b) * GROUP + i] = w.d[r * nb + b];
                    if sums {
                        out.ws[(g * nb + b) * GROUP + i] =
                            w.q[r * c + 32 * b..r * c + 32 * b + 32].iter().map(|&v| v as i16).sum();
                    }
                }
            }
        }
        out
    }

    /// `(q, d)` of row `r`, column `c`.
    #[inline]
    pub fn at(&self, r: usize, c: usize) -> (i8, i16) {
        let nb = self.cols / 32;
        let groups = self.e.len() / GROUP;
        if r >= groups * GROUP {
            let r = r - groups * GROUP;
            return (self.tail.q[r * self.cols + c], self.tail.d[r * nb + c / 32]);
        }
        let (g, i, b, j) = (r / GROUP, r % GROUP, c / 32, c % 32);
        (
            self.q[(g * nb + b) * 256 + 32 * (j / 4) + 4 * i + j % 4],
            self.d[(g * nb + b) * GROUP + i],
        )
    }

    #[inline]
    pub fn exp(&self, r: usize) -> i8 {
        let from = self.e.len();
        if r >= from {
            self.tail.e[r - from]
        } else {
            self.e[r]
        }
    }
}
