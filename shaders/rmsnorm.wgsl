// rmsnorm.wgsl — RMSNorm of Q12 rows times the gain, output with z_frac fraction bits.
// CPU twin: crate/src/backend/cpu/elementwise.rs `rmsnorm_row`. Composed as this file + reduce.wgsl +
// wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: RmsnormParams    rows, dim (≤ 1024), eps_q24, g_exp, z_frac
//   1 storage  x: array<i32>       read  [rows, dim]
//   2 storage  g: array<i32>       read  [dim]   gain, |g| < 2^15
//   3 storage  z: array<i32>       read_write [rows, dim]
//
// Dispatch: one workgroup of WG threads per row (workgroup_id.x + 65535·workgroup_id.y).
//
// Bounds (as cpu.rs): the pre-shift s makes every |x| >> s < 2^11, so the sum of squares is
// < dim·2^22 ≤ 2^32 for dim ≤ 1024, a u32 sum whose reduction order does not matter (no
// term and no partial sum can wrap). v < 2^22 + eps is normalised by an even shift into
// [2^28, 2^30), its square root is 16 bits and the reciprocal r ∈ (2^15, 2^16]. The unshifted
// x times r and y times g are Wide products (< 2^47) with a rounding shift (mul_shift).
// Every thread computes v, sq and r itself (the same integers), so no broadcast is needed.

struct RmsnormParams {
    rows: u32,
    dim: u32,
    eps_q24: u32,
    g_exp: i32,
    z_frac: i32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: RmsnormParams;
@group(0) @binding(1) var<storage, read> x: array<i32>;
@group(0) @binding(2) var<storage, read> g: array<i32>;
@group(0) @binding(3) var<storage, read_write> z: array<i32>;


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + 65535u * wid.y;
    if row >= p.rows {
        return;
    }
    let base = row * p.dim;
    var m = 0u;
    for (var i = lid; i < p.dim; i += WG) {
        m = max(m, uabs(x[base + i]));
    }
    m = reduce_max(lid, m);
    var s = 0u;
    while (m >> s) >= 2048u {
        s += 1u;
    }
    var ss = 0u;
    for (var i = lid; i < p.dim; i += WG) {
        let u = uabs(x[base + i]) >> s;
        ss += u * u;
    }
    ss = reduce_sum(lid, ss);
    let v = ss / p.dim + (p.eps_q24 >> min(2u * s, 31u));
    if v == 0u {
        for (var i = lid; i < p.dim; i += WG) {
            z[base + i] = 0;
        }
        return;
    }
    var vn = v;
    var k = 0i;
    while vn < (1u << 28u) {
        vn <<= 2u;
        k += 1;
    }
    let sq = isqrt(vn << 2u);
    let r = ((1u << 31u) + sq / 2u) / sq;
    let sh_y = i32(s) + 6 - k;
    let sh_z = 24 + p.g_exp - p.z_frac;
    for (var i = lid; i < p.dim; i += WG) {
        let y = mul_shift(x[base + i], i32(r), sh_y);
        z[base + i] = mul_shift(y, g[i], sh_z);
    }
}
