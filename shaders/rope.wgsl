// rope.wgsl — rotates adjacent pairs of every head of each row in place (llama.cpp's normal
// RoPE mode): (x0, x1) ← (x0·cos − x1·sin, x0·sin + x1·cos) · 2^-14, rounded half up,
// saturated. Each row has its own position (so a batch may hold rows of several sequences).
// CPU twin: crate/src/backend/cpu/elementwise.rs `rope_row`. Composed as this file + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: RopeParams       rows, width (heads·HEAD_DIM)
//   1 storage  x: array<i32>       read_write [rows, width]  Q10, any range
//   2 storage  pos: array<u32>     read  [rows]              position of each row (< ctx)
//   3 storage  rope_cos: array<i32>     read  [ctx, HEAD_DIM/2]   Q1.14 (|·| ≤ 2^14)
//   4 storage  rope_sin: array<i32>     read  [ctx, HEAD_DIM/2]
//
// Dispatch: (ceil(width/2 / WG), rows, 1); one thread per pair. HEAD_DIM is an override.
// Bounds: each product |x|·2^14 < 2^45 and their sum < 2^46: Wide, then a rounding shift.

struct RopeParams {
    rows: u32,
    width: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;
const ROPE_FRAC: i32 = 14;
override HEAD_DIM: u32 = 64u;

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<i32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> rope_cos: array<i32>;
@group(0) @binding(4) var<storage, read> rope_sin: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pair = gid.x;
    let t = gid.y;
    if 2u * pair >= p.width || t >= p.rows {
        return;
    }
    let half = HEAD_DIM / 2u;
    let i = pair % half;
    let ti = pos[t] * half + i;
    let c = rope_cos[ti];
    let s = rope_sin[ti];
    let o = t * p.width + 2u * pair;
    let x0 = x[o];
    let x1 = x[o + 1u];
    x[o] = wide_round_shift_sat(wide_sub(wide_mul_i32(x0, c), wide_mul_i32(x1, s)), ROPE_FRAC);
    x[o + 1u] = wide_round_shift_sat(wide_add(wide_mul_i32(x0, s), wide_mul_i32(x1, c)), ROPE_FRAC);
}
