// silu_mul.wgsl — out = silu(gate) · up, all Q10. SiLU by linear interpolation in a table
// of step 1/64 on [−16, 16]; silu(g) = g above, 0 below.
// CPU twin: crate/src/backend/cpu/elementwise.rs `silu_mul`. Composed as this file + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: ElementwiseParams  n (elements)
//   1 storage  gate: array<i32>      read  [n]
//   2 storage  up: array<i32>        read  [n]
//   3 storage  silu: array<i32>      read  [2·CENTRE + 1]  round(2^10·silu(i/64)), i = −CENTRE..CENTRE
//   4 storage  out: array<i32>       read_write [n]
//
// Dispatch: 1-D over n in workgroups of WG (x + 65535·WG·y). CENTRE is an override (1024).
// Bounds: idx = (g >> 4) + CENTRE cannot wrap (|g >> 4| < 2^27); neighbouring table entries
// differ by ≤ 18, so (b − a)·(g & 15) + 8 < 2^9; silu · up is a Wide product (< 2^62) with a
// rounding shift by 10, saturated.

struct ElementwiseParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;
const FFN_FRAC: i32 = 10;
override CENTRE: i32 = 1024;

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read> gate: array<i32>;
@group(0) @binding(2) var<storage, read> up: array<i32>;
@group(0) @binding(3) var<storage, read> silu: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + 65535u * WG * gid.y;
    if i >= p.n {
        return;
    }
    let g = gate[i];
    let idx = (g >> 4u) + CENTRE;
    var s = 0i;
    if idx < 0 {
        s = 0;
    } else if idx >= 2 * CENTRE {
        s = g;
    } else {
        let a = silu[idx];
        let b = silu[idx + 1];
        s = a + (((b - a) * (g & 15) + 8) >> 4u);
    }
    out[i] = mul_shift(s, up[i], FFN_FRAC);
}
