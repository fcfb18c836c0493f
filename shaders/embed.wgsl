// embed.wgsl — residual rows (Q12) of the given tokens from the Q8_0 token embedding:
// out[t, c] = round(d·q · 2^(12 − e_row)), saturated.
// CPU twin: crate/src/backend/cpu/elementwise.rs `embed`. Composed as this file + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: EmbedParams      rows (tokens), dim, vocab
//   1 storage  tokens: array<u32>  read  [rows]  (ids < vocab: the engine checks them first and
//                                        returns LMZ_INVALID_ARGUMENT like the CPU; the shader
//                                        clamps only so that memory is never read out of range)
//   2 storage  w: array<u32>       read  [dim/4, vocab]  4 × i8 per word (the layout of matmul_q8.wgsl)
//   3 storage  d: array<i32>       read  [dim/32, vocab]
//   4 storage  e_row: array<i32>   read  [vocab]
//   5 storage  out: array<i32>     read_write [rows, dim]
//
// Dispatch: (ceil(dim / WG), rows, 1); one thread per output element.
// Bounds: |d·q| ≤ 2047·128 < 2^18; the shift by e − 12 (either sign) is a Wide rounding shift.

struct EmbedParams {
    rows: u32,
    dim: u32,
    vocab: u32,
    _pad: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> d: array<i32>;
@group(0) @binding(4) var<storage, read> e_row: array<i32>;
@group(0) @binding(5) var<storage, read_write> out: array<i32>;

const RESID_FRAC: i32 = 12;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if c >= p.dim || t >= p.rows {
        return;
    }
    let r = min(tokens[t], p.vocab - 1u);
    let qv = i32(w[(c >> 2u) * p.vocab + r] << (24u - 8u * (c & 3u))) >> 24u;
    let v = d[(c / 32u) * p.vocab + r] * qv;
    out[t * p.dim + c] = wide_round_shift_sat(wide_from_i32(v), e_row[r] - RESID_FRAC);
}
