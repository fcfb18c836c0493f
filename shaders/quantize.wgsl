// quantize.wgsl — int8 activations in blocks of 32, a 12-bit mantissa per block and one
// exponent per row: value ≈ q · a[block] · 2^row_exp[row].
// CPU twin: crate/src/backend/cpu/quant.rs `quantize_row` (and `act_mant`). Composed as this file
// + reduce.wgsl + wide.wgsl (for `uabs`).
//
// Bindings (group 0):
//   0 uniform  p: QuantizeParams      rows, width (multiple of 32), frac (fraction bits of z)
//   1 storage  z: array<i32>          read        [rows, width]
//   2 storage  q: array<u32>          read_write  [rows, width/4]   4 × i8 per word, element 4i+k in byte k
//   3 storage  scale_sum: array<u32>       read_write  [rows, width/32]  a | (sum << 16): a ≤ 4096, |sum| ≤ 4064
//   4 storage  row_exp: array<i32>        read_write  [rows]            E − 7 − frac
//
// Dispatch: one workgroup of WG threads per row (workgroup_id.x + 65535·workgroup_id.y).
// Thread lid owns blocks lid, lid+WG, … and writes their 8 q words and scale_sum word whole.
//
// Bounds (as cpu.rs): m < 2^32; E ≤ 21; act_mant's divisor 127·2^(E−7) < 2^31 and its
// numerator m·2^(7−E) < 2^31 (taken only when m < 2^24); in q = round(|v| / (a·2^(E−7))) the
// numerator is < 2^31 and the denominator ≤ 4096·2^14, and q ≤ 127. The max over the row is a
// u32 max, so the reduction order does not matter.

struct QuantizeParams {
    rows: u32,
    width: u32,
    frac: i32,
    _pad: u32,
}

const WG: u32 = 64u;
const ACT_MANT_MAX: u32 = 4096u;

@group(0) @binding(0) var<uniform> p: QuantizeParams;
@group(0) @binding(1) var<storage, read> z: array<i32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
@group(0) @binding(3) var<storage, read_write> scale_sum: array<u32>;
@group(0) @binding(4) var<storage, read_write> row_exp: array<i32>;

// ceil(m · 2^(7−e) / 127) (cpu.rs act_mant).
fn act_mant(m: u32, e: u32) -> u32 {
    if e >= 7u {
        let div = 127u << min(e - 7u, 24u);
        return m / div + select(0u, 1u, m % div != 0u);
    } else if m >= (1u << 24u) {
        return 0xFFFFFFFFu;
    }
    let num = m << (7u - e);
    return (num + 126u) / 127u; // div_ceil; num < 2^31
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + 65535u * wid.y;
    if row >= p.rows {
        return; // uniform across the workgroup
    }
    let base = row * p.width;
    var m = 0u;
    for (var i = lid; i < p.width; i += WG) {
        m = max(m, uabs(z[base + i]));
    }
    let m_all = reduce_max(lid, m);
    // Smallest E with every block mantissa ≤ 4096.
    var e = 0u;
    while act_mant(m_all, e) > ACT_MANT_MAX {
        e += 1u;
    }
    let nb = p.width / 32u;
    for (var b = lid; b < nb; b += WG) {
        let o = base + 32u * b;
        var mb = 0u;
        for (var i = 0u; i < 32u; i++) {
            mb = max(mb, uabs(z[o + i]));
        }
        let ab = act_mant(mb, e);
        var s = 0i;
        for (var w = 0u; w < 8u; w++) {
            var word = 0u;
            for (var k = 0u; k < 4u; k++) {
                let v = z[o + 4u * w + k];
                var qv = 0i;
                if ab != 0u {
                    var num = uabs(v);
                    var den = ab;
                    if e >= 7u {
                        den = ab << (e - 7u);
                    } else {
                        num = num << (7u - e);
                    }
                    let r = num % den;
                    let qu = num / den + select(0u, 1u, r >= den - r);
                    qv = select(i32(qu), -i32(qu), v < 0);
                }
                s += qv;
                word |= (u32(qv) & 0xFFu) << (8u * k);
            }
            q[(o >> 2u) + w] = word;
        }
        scale_sum[row * nb + b] = ab | (u32(s) << 16u);
    }
    if lid == 0u {
        row_exp[row] = i32(e) - 7 - p.frac;
    }
}
