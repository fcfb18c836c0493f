// matmul_q4.wgsl — out[t, r] = round(Σ_b (d·S'_b + m·X_b)·a_b · 2^(exp_t − e_r + frac_out)),
// saturated to i32: a Q4_1 matrix (packed nibbles) times int8 block-quantised activations.
// CPU twin: crate/src/backend/cpu.rs `dot_q4` (via `matmul_q4`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + wide.wgsl.
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
// Bounds: word w of a block's nibbles masked with 0x0F0F0F0F is elements 4w..4w+3 (0..15, a
// valid non-negative i8), shifted right 4 and masked it is elements 16+4w..; so
// S = Σ nib·q = Σ_w dot4(lo_w, q_w) + dot4(hi_w, q_{4+w}), |S| ≤ 15·127·32 < 2^16;
// S' = S − 8X, |S'| ≤ 8·127·32 = 32512, |X| ≤ 4064, |d|,|m| ≤ 8191 ⇒ |T| < 2^29.
// Σ T·a < 2^47 is held exactly in a SplitAcc (|hi| < 2^31 for NB ≤ 48, see wide.wgsl).

struct MatmulParams {
    rows: u32,
    tokens: u32,
    frac_out: i32,
    tok0: u32,
}

const WG: u32 = 64u;
const TPT: u32 = 4u; // tokens per invocation: four named accumulators in main
override NB: u32 = 18u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> nib: array<u32>;
@group(0) @binding(2) var<storage, read> dm: array<u32>;
@group(0) @binding(3) var<storage, read> e_row: array<i32>;
@group(0) @binding(4) var<storage, read> q: array<u32>;
@group(0) @binding(5) var<storage, read> scale_sum: array<u32>;
@group(0) @binding(6) var<storage, read> row_exp: array<i32>;
@group(0) @binding(7) var<storage, read_write> out: array<i32>;

// One block of one token: T = d·(S − 8X) + m·X with S = Σ nib·q (see the bounds above).
fn block_t(w0: u32, w1: u32, w2: u32, w3: u32, d: i32, m: i32, t: u32, b: u32) -> vec2<i32> {
    let qo = (t * NB + b) * 8u;
    var s = dot4(w0 & 0x0F0F0F0Fu, q[qo]);
    s += dot4(w1 & 0x0F0F0F0Fu, q[qo + 1u]);
    s += dot4(w2 & 0x0F0F0F0Fu, q[qo + 2u]);
    s += dot4(w3 & 0x0F0F0F0Fu, q[qo + 3u]);
    s += dot4((w0 >> 4u) & 0x0F0F0F0Fu, q[qo + 4u]);
    s += dot4((w1 >> 4u) & 0x0F0F0F0Fu, q[qo + 5u]);
    s += dot4((w2 >> 4u) & 0x0F0F0F0Fu, q[qo + 6u]);
    s += dot4((w3 >> 4u) & 0x0F0F0F0Fu, q[qo + 7u]);
    let mw = scale_sum[t * NB + b];
    let x = i32(mw) >> 16u;
    return vec2<i32>(d * (s - 8 * x) + m * x, i32(mw & 0xFFFFu));
}

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
        let w0 = nib[wo];
        let w1 = nib[wo + p.rows];
        let w2 = nib[wo + 2u * p.rows];
        let w3 = nib[wo + 3u * p.rows];
        let dmw = dm[b * p.rows + r];
        let d = i32(dmw << 16u) >> 16u;
        let m = i32(dmw) >> 16u;
        let xa = block_t(w0, w1, w2, w3, d, m, ta, b);
        let xb = block_t(w0, w1, w2, w3, d, m, tb, b);
        let xc = block_t(w0, w1, w2, w3, d, m, tc, b);
        let xd = block_t(w0, w1, w2, w3, d, m, td, b);
        acc_a = split_add(acc_a, xa.x, u32(xa.y));
        acc_b = split_add(acc_b, xb.x, u32(xb.y));
        acc_c = split_add(acc_c, xc.x, u32(xc.y));
        acc_d = split_add(acc_d, xd.x, u32(xd.y));
    }
    let er = e_row[r];
    out[t0 * p.rows + r] = split_round_shift_sat(acc_a, er - row_exp[ta] - p.frac_out);
    if t0 + 1u <= last {
        out[(t0 + 1u) * p.rows + r] = split_round_shift_sat(acc_b, er - row_exp[tb] - p.frac_out);
    }
    if t0 + 2u <= last {
        out[(t0 + 2u) * p.rows + r] = split_round_shift_sat(acc_c, er - row_exp[tc] - p.frac_out);
    }
    if t0 + 3u <= last {
        out[(t0 + 3u) * p.rows + r] = split_round_shift_sat(acc_d, er - row_exp[td] - p.frac_out);
    }
}
