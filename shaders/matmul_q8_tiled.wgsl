// matmul_q8_tiled.wgsl — the integers of matmul_q8.wgsl for batches (the logits of a
// prefill): a workgroup computes a tile of TR rows × TT tokens and stages, a slab of SB blocks
// at a time, the tile's weights and activations in workgroup memory. A weight word then comes
// from global memory once per TT = 16 tokens (matmul_q8.wgsl: once per 4) and an activation
// word once per TR = 64 rows. The engine runs it for batches of at least 16 rows and
// matmul_q8.wgsl for fewer.
// CPU twin: crate/src/backend/cpu.rs `dot_q8` (via `matmul_q8`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + wide.wgsl.
//
// Bindings (group 0): as matmul_q8.wgsl (the same buffers, the same layouts):
//   0 uniform  p: MatmulParams     rows (= vocab), tokens (of this dispatch, ≥ 1), frac_out, tok0
//   1 storage  w: array<u32>       read  [NB·8, rows]  4 × i8 per word
//   2 storage  d: array<i32>       read  [NB, rows]    block scales, |d| ≤ 2047
//   3 storage  e_row: array<i32>   read  [rows]
//   4 storage  q: array<u32>       read  [tokens, NB·8]
//   5 storage  scale_sum: array<u32>    read  [tokens, NB]  a | (X << 16)
//   6 storage  row_exp: array<i32>     read  [tokens]
//   7 storage  out: array<i32>     read_write [tokens of this dispatch, rows]
//
// Dispatch: (ceil(rows / TR), ceil(tokens / TT), 1) workgroups of WG = TR·TQ invocations;
// invocation li computes row TR·x + li % TR for the four tokens TT·y + 4·(li / TR) + 0..3.
// Tile rows past the matrix are staged as zeros and tile tokens past the batch as the last
// token; only the real (row, token) pairs are stored. Every invocation reaches every barrier.
//
// Bounds: per block and token the same T as matmul_q8.wgsl (|T| < 2^30), summed in the same
// order into a SplitAcc: the same bits.
// Workgroup memory: (TR·SB·9 + TT·SB·9) words = 11,520 bytes (WebGPU's default limit: 16,384).

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
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> d: array<i32>;
@group(0) @binding(3) var<storage, read> e_row: array<i32>;
@group(0) @binding(4) var<storage, read> q: array<u32>;
@group(0) @binding(5) var<storage, read> scale_sum: array<u32>;
@group(0) @binding(6) var<storage, read> row_exp: array<i32>;
@group(0) @binding(7) var<storage, read_write> out: array<i32>;

// The slab's weights: [SB·8, TR] quant words and [SB, TR] scales.
var<workgroup> s_w: array<u32, 2048>; // TR · SB · 8
var<workgroup> s_d: array<i32, 256>; // TR · SB
// The slab's activations: [TT, SB·8] words and [TT, SB] (a, X) words.
var<workgroup> s_q: array<u32, 512>; // TT · SB · 8
var<workgroup> s_ss: array<u32, 64>; // TT · SB

// One block of tile token tl: T = d·S with S = Σ w·q (matmul_q8.wgsl), the activations from
// the slab's block bb; returns (T, a).
fn block_t(wb: array<u32, 8>, db: i32, tl: u32, bb: u32) -> vec2<i32> {
    let qo = tl * SB * 8u + bb * 8u;
    var s = 0i;
    for (var i = 0u; i < 8u; i++) {
        s += dot4(wb[i], s_q[qo + i]);
    }
    return vec2<i32>(db * s, i32(s_ss[tl * SB + bb] & 0xFFFFu));
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
        for (var i = li; i < TR * SB * 8u; i += WG) {
            let rr = r0 + i % TR;
            let j = i / TR; // word 8·(b − s) + k of the row's slab
            var v = 0u;
            if rr < p.rows && 8u * s + j < 8u * NB {
                v = w[(8u * s + j) * p.rows + rr];
            }
            s_w[i] = v;
        }
        for (var i = li; i < TR * SB; i += WG) {
            let rr = r0 + i % TR;
            let j = i / TR;
            var v = 0i;
            if rr < p.rows && s + j < NB {
                v = d[(s + j) * p.rows + rr];
            }
            s_d[i] = v;
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
                var wb: array<u32, 8>;
                for (var i = 0u; i < 8u; i++) {
                    wb[i] = s_w[(8u * bb + i) * TR + rl];
                }
                let db = s_d[bb * TR + rl];
                let xa = block_t(wb, db, 4u * g, bb);
                let xb = block_t(wb, db, 4u * g + 1u, bb);
                let xc = block_t(wb, db, 4u * g + 2u, bb);
                let xd = block_t(wb, db, 4u * g + 3u, bb);
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
