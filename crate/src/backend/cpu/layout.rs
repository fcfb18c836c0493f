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

/// The block of row `i` of a group, the pack's 16 nibble bytes (byte `j`: element `j` in the
/// low nibble, `j + 16` in the high one), into its place in the group's 128 bytes: step `p`
/// (elements `8p..8p+8`) at `32p`, row `i`'s byte `e` of it holding elements `8p + e` (low)
/// and `8p + 4 + e` (high). Steps 0 and 1 are low nibbles of the pack's bytes, 2 and 3 the
/// high ones of the same bytes.
#[inline(always)]
fn interleave_q4(blk: &[u8], i: usize, dst: &mut [u8]) {
    for k in 0..2 {
        for e in 0..4 {
            let (a, c) = (blk[8 * k + e], blk[8 * k + 4 + e]);
            dst[32 * k + 4 * i + e] = (a & 15) | c << 4;
            dst[32 * (k + 2) + 4 * i + e] = a >> 4 | (c & 0xf0);
        }
    }
}

/// `[groups·8, per]` → `[groups, per, 8]` in place: each group of 8 rows transposed through
/// `scratch` (its rows are the same values as its output).
fn transpose_groups<T: Copy + Default>(v: &mut [T], per: usize) {
    let mut scratch = vec![T::default(); GROUP * per];
    for grp in v.chunks_exact_mut(GROUP * per) {
        scratch.copy_from_slice(grp);
        for (b, out) in grp.chunks_exact_mut(GROUP).enumerate() {
            for (i, o) in out.iter_mut().enumerate() {
                *o = scratch[i * per + b];
            }
        }
    }
}

impl CpuQ4 {
    /// The engine's layout of `w`, which stays `w`'s.
    pub fn new(w: &Q4Matrix) -> CpuQ4 {
        Self::from_matrix(w.clone())
    }

    /// The engine's layout of `w`, made in `w`'s own memory: a group of 8 rows holds the
    /// same bytes in both layouts, so interleaving is a permutation within each group (through
    /// a scratch copy of one group). No second copy of the weights, and the bytes are
    /// rearranged while they are in cache (the browser builds its engine this way).
    pub fn from_matrix(mut w: Q4Matrix) -> CpuQ4 {
        let (nb, groups) = (w.cols / 32, w.rows / GROUP);
        let from = groups * GROUP;
        let tail = tail_q4(&w, from);
        let row = w.cols / 2;
        w.nib.truncate(from * row);
        w.d.truncate(from * nb);
        w.m.truncate(from * nb);
        w.e.truncate(from);
        let mut scratch = vec![0u8; GROUP * row];
        for grp in w.nib.chunks_exact_mut(GROUP * row) {
            scratch.copy_from_slice(grp);
            for (b, dst) in grp.chunks_exact_mut(128).enumerate() {
                for i in 0..GROUP {
                    interleave_q4(&scratch[i * row + 16 * b..i * row + 16 * (b + 1)], i, dst);
                }
            }
        }
        transpose_groups(&mut w.d, nb);
        transpose_groups(&mut w.m, nb);
        CpuQ4 {
            rows: w.rows,
            cols: w.cols,
            w: w.nib,
            d: w.d,
            m: w.m,
            e: w.e,
            tail,
        }
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
    /// The engine's layout of `w`, which stays `w`'s.
    pub fn new(w: &Q8Matrix) -> CpuQ8 {
        Self::from_matrix(w.clone())
    }

    /// The engine's layout of `w`, made in `w`'s own memory, group by group as
    /// [`CpuQ4::from_matrix`].
    pub fn from_matrix(mut w: Q8Matrix) -> CpuQ8 {
        let (c, nb, groups) = (w.cols, w.cols / 32, w.rows / GROUP);
        let from = groups * GROUP;
        let tail = Q8Matrix {
            rows: w.rows - from,
            cols: c,
            q: w.q[from * c..].to_vec(),
            d: w.d[from * nb..].to_vec(),
            e: w.e[from..].to_vec(),
        };
        w.q.truncate(from * c);
        w.d.truncate(from * nb);
        w.e.truncate(from);
        let sums = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));
        let mut ws = vec![0i16; if sums { groups * nb * GROUP } else { 0 }];
        let mut scratch = vec![0i8; GROUP * c];
        for (g, grp) in w.q.chunks_exact_mut(GROUP * c).enumerate() {
            scratch.copy_from_slice(grp);
            for (b, dst) in grp.chunks_exact_mut(256).enumerate() {
                for i in 0..GROUP {
                    let src = &scratch[i * c + 32 * b..i * c + 32 * (b + 1)];
                    for (k, four) in src.chunks_exact(4).enumerate() {
                        dst[32 * k + 4 * i..32 * k + 4 * i + 4].copy_from_slice(four);
                    }
                    if sums {
                        ws[(g * nb + b) * GROUP + i] = src.iter().map(|&v| v as i16).sum();
                    }
                }
            }
        }
        transpose_groups(&mut w.d, nb);
        CpuQ8 {
            rows: w.rows,
            cols: c,
            q: w.q,
            d: w.d,
            e: w.e,
            ws,
            tail,
        }
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
