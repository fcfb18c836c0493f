// matmul_q4.wgsl — out[t, r] = round(Σ_b (d·S'_b + m·X_b)·a_b · 2^(exp_t − e_r + frac_out)),
// saturated to i32: a Q4_1 matrix (packed nibbles) times int8 block-quantised activations.
// CPU twin: crate/src/backend/cpu.rs `dot_q4` (via `matmul_q4`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: MatmulParams     rows (outputs), tokens (of this dispatch), frac_out, tok0 (first
//                                  activation row read; out row i is activation row tok0 + i)
//   1 storage  nib: array<u32>     read  [rows, NB·4]  ggml Q4_1 nibbles as stored in the pack: byte j of
//                                        a block's 16 holds element j (low nibble) and j+16 (high)
//   2 storage  dm: array<u32>      read  [rows, NB]    d (low 16 bits, i16) | m (high 16, i16), |d|,|m| ≤ 8191
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
const TPT: u32 = 4u;
override NB: u32 = 18u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> nib: array<u32>;
@group(0) @binding(2) var<storage, read> dm: array<u32>;
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
        let wo = (r * NB + b) * 4u;
        let w0 = nib[wo];
        let w1 = nib[wo + 1u];
        let w2 = nib[wo + 2u];
        let w3 = nib[wo + 3u];
        let dmw = dm[r * NB + b];
        let d = i32(dmw << 16u) >> 16u;
        let m = i32(dmw) >> 16u;
        for (var k = 0u; k < nt; k++) {
            let t = p.tok0 + t0 + k;
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
            let tb = d * (s - 8 * x) + m * x;
            acc[k] = split_add(acc[k], tb, mw & 0xFFFFu);
        }
    }
    let er = e_row[r];
    for (var k = 0u; k < nt; k++) {
        let t = t0 + k;
        out[t * p.rows + r] = split_round_shift_sat(acc[k], er - row_exp[p.tok0 + t] - p.frac_out);
    }
}
