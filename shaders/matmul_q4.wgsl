// matmul_q4.wgsl — out[t, r] = round(Σ_b (d·S'_b + m·X_b)·a_b · 2^(exp_t − e_r + frac_out)),
// saturated to i32: a Q4_1 matrix (packed nibbles) times int8 block-quantised activations.
// CPU twin: crate/src/backend/cpu/matmul.rs `dot_q4` (via `matmul_q4`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + matmul_common.wgsl + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: MatmulParams     rows (outputs), tokens (of this dispatch), frac_out, tok0 (first
//                                  activation row read; out row i is activation row tok0 + i)
//   1 storage  nib: array<u32>     read  [NB·4, rows]  ggml Q4_1 nibbles as stored in the pack (byte j of
//                                        a block's 16 holds element j in its low nibble and j+16 in its
//                                        high one), transposed at upload so that neighbouring invocations
//                                        (rows) read neighbouring words
//   2 storage  dm: array<u32>      read  [NB, rows]    d (low 16 bits, i16) | m (high 16, i16), |d|,|m| ≤ 8191
//   3 storage  e_row: array<i32>   read  [rows]        row exponent
//   4 storage  q: array<u32>       read  [tokens, NB·8] activations, 4 × i8 per word (quantize.wgsl)
//   5 storage  scale_sum: array<u32>    read  [tokens, NB]  a | (X << 16)
//   6 storage  row_exp: array<i32>     read  [tokens]
//   7 storage  out: array<i32>     read_write [tokens of this dispatch, rows]
//
// Dispatch: (ceil(rows / WG), ceil(tokens / TPT), 1) workgroups of WG threads; thread
// (r, g) computes row r for tokens TPT·g … TPT·g+TPT−1 (the weight block is loaded once for
// TPT tokens). NB (blocks per row = columns / 32) is an override constant.
//
// Bounds: q4_block (matmul_common.wgsl), |T| < 2^29; Σ T·a < 2^47 is held exactly in a
// SplitAcc (|hi| < 2^31 for NB ≤ 48, see wide.wgsl).

const WG: u32 = 64u;
const TPT: u32 = 4u; // tokens per invocation: four named accumulators in main
override NB: u32 = 18u;

// Bindings 0 and 3–7 (and MatmulParams) are declared in matmul_common.wgsl.
@group(0) @binding(1) var<storage, read> nib: array<u32>;
@group(0) @binding(2) var<storage, read> dm: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let t0 = gid.y * TPT;
    if r >= p.rows || t0 >= p.tokens {
        return;
    }
    // TPT = 4 tokens in four named accumulators (no dynamically indexed private array: that
    // would live in memory on most compilers). A group's missing tokens (past the end) repeat
    // the last one and are not stored.
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
        let wo = 4u * b * p.rows + r;
        let w = vec4<u32>(nib[wo], nib[wo + p.rows], nib[wo + 2u * p.rows], nib[wo + 3u * p.rows]);
        let dmw = dm[b * p.rows + r];
        let d = i32(dmw << 16u) >> 16u;
        let m = i32(dmw) >> 16u;
        let xa = q4_block(w, acts(ta, b), d, m, scale_sum[ta * NB + b]);
        let xb = q4_block(w, acts(tb, b), d, m, scale_sum[tb * NB + b]);
        let xc = q4_block(w, acts(tc, b), d, m, scale_sum[tc * NB + b]);
        let xd = q4_block(w, acts(td, b), d, m, scale_sum[td * NB + b]);
        acc_a = split_add(acc_a, xa.x, u32(xa.y));
        acc_b = split_add(acc_b, xb.x, u32(xb.y));
        acc_c = split_add(acc_c, xc.x, u32(xc.y));
        acc_d = split_add(acc_d, xd.x, u32(xd.y));
    }
    store4(acc_a, acc_b, acc_c, acc_d, r, t0, last);
}
