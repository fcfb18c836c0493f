// matmul_q8.wgsl — out[t, r] = round(Σ_b d·S_b·a_b · 2^(exp_t − e_r + frac_out)), saturated
// to i32: a Q8_0 matrix times int8 block-quantised activations — the tied output projection
// (logits, Q10 log2 units) over the token embedding.
// CPU twin: crate/src/backend/cpu/matmul.rs `dot_q8` (via `matmul_q8`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + matmul_common.wgsl + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: MatmulParams     rows (outputs = vocab), tokens (of this dispatch), frac_out, tok0
//                                  (first activation row read; out row i is activation row tok0 + i,
//                                  so the logits of a long batch are made a chunk of rows at a time)
//   1 storage  w: array<u32>       read  [NB·8, rows]  4 × i8 per word, transposed at upload so that
//                                        neighbouring invocations (rows) read neighbouring words
//   2 storage  d: array<i32>       read  [NB, rows]    block scales, |d| ≤ 2047
//   3 storage  e_row: array<i32>   read  [rows]
//   4 storage  q: array<u32>       read  [tokens, NB·8]
//   5 storage  scale_sum: array<u32>    read  [tokens, NB]  a | (X << 16)
//   6 storage  row_exp: array<i32>     read  [tokens]
//   7 storage  out: array<i32>     read_write [tokens of this dispatch, rows]
//
// Dispatch: (ceil(rows / WG), ceil(tokens / TPT), 1) workgroups; thread (r, g) computes row
// r for TPT tokens (the weight block is loaded once for them). NB (columns / 32) is an
// override constant.
//
// Bounds: q8_block (matmul_common.wgsl), |T| < 2^30; Σ T·a in a SplitAcc, |hi| < 2^31 for
// NB ≤ 32 (cpu.rs: dim ≤ 1024).

const WG: u32 = 64u;
const TPT: u32 = 4u; // tokens per invocation: four named accumulators in main
override NB: u32 = 18u;

// Bindings 0 and 3–7 (and MatmulParams) are declared in matmul_common.wgsl.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> d: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let t0 = gid.y * TPT;
    if r >= p.rows || t0 >= p.tokens {
        return;
    }
    // TPT = 4 tokens in four named accumulators (see matmul_q4.wgsl).
    let last = p.tokens - 1u;
    let ta = p.tok0 + t0;
    let tb = p.tok0 + min(t0 + 1u, last);
    let tc = p.tok0 + min(t0 + 2u, last);
    let td = p.tok0 + min(t0 + 3u, last);
    var acc_a = SplitAcc(0, 0u, 0u);
    var acc_b = SplitAcc(0, 0u, 0u);
    var acc_c = SplitAcc(0, 0u, 0u);
    var acc_d = SplitAcc(0, 0u, 0u);
    for (var b = 0u; b < NB; b++) {
        let wo = 8u * b * p.rows + r;
        var wb: array<u32, 8>;
        for (var i = 0u; i < 8u; i++) {
            wb[i] = w[wo + i * p.rows];
        }
        let db = d[b * p.rows + r];
        let xa = q8_block(wb, acts(ta, b), db, scale_sum[ta * NB + b]);
        let xb = q8_block(wb, acts(tb, b), db, scale_sum[tb * NB + b]);
        let xc = q8_block(wb, acts(tc, b), db, scale_sum[tc * NB + b]);
        let xd = q8_block(wb, acts(td, b), db, scale_sum[td * NB + b]);
        acc_a = split_add(acc_a, xa.x, u32(xa.y));
        acc_b = split_add(acc_b, xb.x, u32(xb.y));
        acc_c = split_add(acc_c, xc.x, u32(xc.y));
        acc_d = split_add(acc_d, xd.x, u32(xd.y));
    }
    store4(acc_a, acc_b, acc_c, acc_d, r, t0, last);
}
