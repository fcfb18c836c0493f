// matmul_q4_tiled.wgsl — the integers of matmul_q4.wgsl for batches (prefill): a workgroup
// computes a tile of TR rows × TT tokens and stages, a slab of SB blocks at a time, the tile's
// weights and activations in workgroup memory. A weight word then comes from global memory
// once per TT = 16 tokens (matmul_q4.wgsl: once per 4) and an activation word once per TR = 64
// rows. The engine runs it for batches of at least 16 rows and matmul_q4.wgsl for fewer
// (decoding: 1–4 rows, where the tile would be mostly empty).
// CPU twin: crate/src/backend/cpu.rs `dot_q4` (via `matmul_q4`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + wide.wgsl.
//
// Bindings (group 0): as matmul_q4.wgsl (the same buffers, the same layouts):
//   0 uniform  p: MatmulParams     rows, tokens (of this dispatch, ≥ 1), frac_out, tok0
//   1 storage  nib: array<u32>     read  [NB·4, rows]  Q4_1 nibbles, 4 bytes per word
//   2 storage  dm: array<u32>      read  [NB, rows]    d (low 16 bits, i16) | m (high 16, i16)
//   3 storage  e_row: array<i32>   read  [rows]
//   4 storage  q: array<u32>       read  [tokens, NB·8] activations, 4 × i8 per word
//   5 storage  scale_sum: array<u32>    read  [tokens, NB]  a | (X << 16)
//   6 storage  row_exp: array<i32>     read  [tokens]
//   7 storage  out: array<i32>     read_write [tokens of this dispatch, rows]
//
// Dispatch: (ceil(rows / TR), ceil(tokens / TT), 1) workgroups of WG = TR·TQ invocations;
// invocation li computes row TR·x + li % TR for the four tokens TT·y + 4·(li / TR) + 0..3.
// Tile rows past the matrix are staged as zeros and tile tokens past the batch as the last
// token, so every invocation computes valid integers; only the real (row, token) pairs are
// stored. Every invocation reaches every barrier (the slab loop's bounds are uniform).
//
// Bounds: per block and token the same T as matmul_q4.wgsl (|T| < 2^29), summed in the same
// order (block 0, 1, …) into a SplitAcc: the same bits.
// Workgroup memory: (TR·SB·5 + TT·SB·9) words = 7,424 bytes (WebGPU's default limit: 16,384).

struct MatmulParams {
    rows: u32,
    tokens: u32,
    frac_out: i32,
    tok0: u32,
}

const TR: u32 = 64u; // rows per tile
const TQ: u32 = 4u; // token quads per tile
const TT: u32 = 16u; // tokens per tile (TQ · 4)
const SB: u32 = 4u; // blocks per slab
const WG: u32 = 256u; // invocations (TR · TQ)
override NB: u32 = 18u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> nib: array<u32>;
@group(0) @binding(2) var<storage, read> dm: array<u32>;
@group(0) @binding(3) var<storage, read> e_row: array<i32>;
@group(0) @binding(4) var<storage, read> q: array<u32>;
@group(0) @binding(5) var<storage, read> scale_sum: array<u32>;
@group(0) @binding(6) var<storage, read> row_exp: array<i32>;
@group(0) @binding(7) var<storage, read_write> out: array<i32>;

// The slab's weights: [SB·4, TR] nibble words and [SB, TR] (d, m) words.
var<workgroup> s_nib: array<u32, 1024>; // TR · SB · 4
var<workgroup> s_dm: array<u32, 256>; // TR · SB
// The slab's activations: [TT, SB·8] words and [TT, SB] (a, X) words.
var<workgroup> s_q: array<u32, 512>; // TT · SB · 8
var<workgroup> s_ss: array<u32, 64>; // TT · SB

// One block of tile token tl: T = d·(S − 8X) + m·X (matmul_q4.wgsl), the activations from
// the slab's block bb in workgroup memory; returns (T, a).
fn block_t(w0: u32, w1: u32, w2: u32, w3: u32, d: i32, m: i32, tl: u32, bb: u32) -> vec2<i32> {
    let qo = tl * SB * 8u + bb * 8u;
    var s = dot4(w0 & 0x0F0F0F0Fu, s_q[qo]);
    s += dot4(w1 & 0x0F0F0F0Fu, s_q[qo + 1u]);
    s += dot4(w2 & 0x0F0F0F0Fu, s_q[qo + 2u]);
    s += dot4(w3 & 0x0F0F0F0Fu, s_q[qo + 3u]);
    s += dot4((w0 >> 4u) & 0x0F0F0F0Fu, s_q[qo + 4u]);
    s += dot4((w1 >> 4u) & 0x0F0F0F0Fu, s_q[qo + 5u]);
    s += dot4((w2 >> 4u) & 0x0F0F0F0Fu, s_q[qo + 6u]);
    s += dot4((w3 >> 4u) & 0x0F0F0F0Fu, s_q[qo + 7u]);
    let mw = s_ss[tl * SB + bb];
    let x = i32(mw) >> 16u;
    return vec2<i32>(d * (s - 8 * x) + m * x, i32(mw & 0xFFFFu));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r0 = wid.x * TR;
    let tt0 = wid.y * TT;
    let rl = li % TR;
    let g = li / TR;
    let r = r0 + rl;
    let last = p.tokens - 1u;
    var acc_a = SplitAcc(0, 0u, 0u);
    var acc_b = SplitAcc(0, 0u, 0u);
    var acc_c = SplitAcc(0, 0u, 0u);
    var acc_d = SplitAcc(0, 0u, 0u);
    for (var s = 0u; s < NB; s += SB) {
        // Stage the slab: blocks s … s+SB−1 (those past NB as zeros, never used).
        for (var i = li; i < TR * SB * 4u; i += WG) {
            let rr = r0 + i % TR;
            let j = i / TR; // word 4·(b − s) + k of the row's slab
            var v = 0u;
            if rr < p.rows && 4u * s + j < 4u * NB {
                v = nib[(4u * s + j) * p.rows + rr];
            }
            s_nib[i] = v;
        }
        for (var i = li; i < TR * SB; i += WG) {
            let rr = r0 + i % TR;
            let j = i / TR;
            var v = 0u;
            if rr < p.rows && s + j < NB {
                v = dm[(s + j) * p.rows + rr];
            }
            s_dm[i] = v;
        }
        for (var i = li; i < TT * SB * 8u; i += WG) {
            let t = p.tok0 + min(tt0 + i / (SB * 8u), last);
            let k = i % (SB * 8u);
            var v = 0u;
            if 8u * s + k < 8u * NB {
                v = q[t * NB * 8u + 8u * s + k];
            }
            s_q[i] = v;
        }
        for (var i = li; i < TT * SB; i += WG) {
            let t = p.tok0 + min(tt0 + i / SB, last);
            let k = i % SB;
            var v = 0u;
            if s + k < NB {
                v = scale_sum[t * NB + s + k];
            }
            s_ss[i] = v;
        }
        workgroupBarrier();
        for (var bb = 0u; bb < SB; bb++) {
            if s + bb < NB {
                let w0 = s_nib[(4u * bb) * TR + rl];
                let w1 = s_nib[(4u * bb + 1u) * TR + rl];
                let w2 = s_nib[(4u * bb + 2u) * TR + rl];
                let w3 = s_nib[(4u * bb + 3u) * TR + rl];
                let dmw = s_dm[bb * TR + rl];
                let d = i32(dmw << 16u) >> 16u;
                let m = i32(dmw) >> 16u;
                let xa = block_t(w0, w1, w2, w3, d, m, 4u * g, bb);
                let xb = block_t(w0, w1, w2, w3, d, m, 4u * g + 1u, bb);
                let xc = block_t(w0, w1, w2, w3, d, m, 4u * g + 2u, bb);
                let xd = block_t(w0, w1, w2, w3, d, m, 4u * g + 3u, bb);
                acc_a = split_add(acc_a, xa.x, u32(xa.y));
                acc_b = split_add(acc_b, xb.x, u32(xb.y));
                acc_c = split_add(acc_c, xc.x, u32(xc.y));
                acc_d = split_add(acc_d, xd.x, u32(xd.y));
            }
        }
        workgroupBarrier();
    }
    let t0 = tt0 + 4u * g;
    if r >= p.rows || t0 > last {
        return;
    }
    let er = e_row[r];
    out[t0 * p.rows + r] = split_round_shift_sat(acc_a, er - row_exp[p.tok0 + t0] - p.frac_out);
    if t0 + 1u <= last {
        out[(t0 + 1u) * p.rows + r] = split_round_shift_sat(acc_b, er - row_exp[p.tok0 + t0 + 1u] - p.frac_out);
    }
    if t0 + 2u <= last {
        out[(t0 + 2u) * p.rows + r] = split_round_shift_sat(acc_c, er - row_exp[p.tok0 + t0 + 2u] - p.frac_out);
    }
    if t0 + 3u <= last {
        out[(t0 + 3u) * p.rows + r] = split_round_shift_sat(acc_d, er - row_exp[p.tok0 + t0 + 3u] - p.frac_out);
    }
}
