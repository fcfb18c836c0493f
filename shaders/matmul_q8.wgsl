// matmul_q8.wgsl — out[t, r] = round(Σ_b d·S_b·a_b · 2^(exp_t − e_r + frac_out)), saturated
// to i32: a Q8_0 matrix times int8 block-quantised activations — the tied output projection
// (logits, Q10 log2 units) over the token embedding.
// CPU twin: crate/src/backend/cpu.rs `dot_q8` (via `matmul_q8`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: MatmulParams     rows (outputs = vocab), tokens (of this dispatch), frac_out, tok0
//                                  (first activation row read; out row i is activation row tok0 + i,
//                                  so the logits of a long batch are made a chunk of rows at a time)
//   1 storage  w: array<u32>       read  [rows, NB·8]  4 × i8 per word
//   2 storage  d: array<i32>       read  [rows, NB]    block scales, |d| ≤ 2047
//   3 storage  e_row: array<i32>   read  [rows]
//   4 storage  q: array<u32>       read  [tokens, NB·8]
//   5 storage  scale_sum: array<u32>    read  [tokens, NB]  a | (X << 16)
//   6 storage  row_exp: array<i32>     read  [tokens]
//   7 storage  out: array<i32>     read_write [tokens of this dispatch, rows]
//
// Dispatch: (ceil(rows / WG), ceil(tokens / TPT), 1) workgroups; thread (r, g) computes row
// r for TPT tokens. NB (columns / 32) is an override constant.
//
// Bounds: |S| ≤ 127·128·32 < 2^19, |d| ≤ 2047 ⇒ |T| < 2^30; Σ T·a in a SplitAcc, |hi| < 2^31
// for NB ≤ 32 (cpu.rs: dim ≤ 1024).

struct MatmulParams {
    rows: u32,
    tokens: u32,
    frac_out: i32,
    tok0: u32,
}

const WG: u32 = 64u;
const TPT: u32 = 4u;
override NB: u32 = 18u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> d: array<i32>;
@group(0) @binding(3) var<storage, read> e_row: array<i32>;
@group(0) @binding(4) var<storage, read> q: array<u32>;
@group(0) @binding(5) var<storage, read> scale_sum: array<u32>;
@group(0) @binding(6) var<storage, read> row_exp: array<i32>;
@group(0) @binding(7) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let t0 = gid.y * TPT;
    if r >= p.rows || t0 >= p.tokens {
        return;
    }
    let nt = min(TPT, p.tokens - t0);
    var acc: array<SplitAcc, TPT>;
    for (var b = 0u; b < NB; b++) {
        let wo = (r * NB + b) * 8u;
        var wb: array<u32, 8>;
        for (var i = 0u; i < 8u; i++) {
            wb[i] = w[wo + i];
        }
        let db = d[r * NB + b];
        for (var k = 0u; k < nt; k++) {
            let t = p.tok0 + t0 + k;
            let qo = (t * NB + b) * 8u;
            var s = 0i;
            for (var i = 0u; i < 8u; i++) {
                s += dot4(wb[i], q[qo + i]);
            }
            let mw = scale_sum[t * NB + b];
            acc[k] = split_add(acc[k], db * s, mw & 0xFFFFu);
        }
    }
    let er = e_row[r];
    for (var k = 0u; k < nt; k++) {
        let t = t0 + k;
        out[t * p.rows + r] = split_round_shift_sat(acc[k], er - row_exp[p.tok0 + t] - p.frac_out);
    }
}
