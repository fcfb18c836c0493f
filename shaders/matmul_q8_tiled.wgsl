// matmul_q8_tiled.wgsl — the integers of matmul_q8.wgsl for batches (the logits of a
// prefill): a workgroup computes a tile of TR rows × TT tokens and stages, a slab of SB blocks
// at a time, the tile's weights and activations in workgroup memory. A weight word then comes
// from global memory once per TT = 16 tokens (matmul_q8.wgsl: once per 4) and an activation
// word once per TR = 64 rows. The engine runs it for batches of at least 16 rows and
// matmul_q8.wgsl for fewer.
// CPU twin: crate/src/backend/cpu/matmul.rs `dot_q8` (via `matmul_q8`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + matmul_common.wgsl + matmul_tiled.wgsl
// + wide.wgsl (the tile's constants TR, TQ, TT, SB, WG and its activation slab are in
// matmul_tiled.wgsl).
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

override NB: u32 = 18u;

// Bindings 0 and 3–7 (and MatmulParams) are declared in matmul_common.wgsl.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> d: array<i32>;

// The slab's weights: [SB·8, TR] quant words and [SB, TR] scales.
var<workgroup> s_w: array<u32, 2048>; // TR · SB · 8
var<workgroup> s_d: array<i32, 256>; // TR · SB

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
        stage_acts(li, tt0, s, last);
        workgroupBarrier();
        for (var bb = 0u; bb < SB; bb++) {
            if s + bb < NB {
                var wb: array<u32, 8>;
                for (var i = 0u; i < 8u; i++) {
                    wb[i] = s_w[(8u * bb + i) * TR + rl];
                }
                let db = s_d[bb * TR + rl];
                let tl = 4u * g;
                let xa = q8_block(wb, slab_acts(tl, bb), db, s_ss[tl * SB + bb]);
                let xb = q8_block(wb, slab_acts(tl + 1u, bb), db, s_ss[(tl + 1u) * SB + bb]);
                let xc = q8_block(wb, slab_acts(tl + 2u, bb), db, s_ss[(tl + 2u) * SB + bb]);
                let xd = q8_block(wb, slab_acts(tl + 3u, bb), db, s_ss[(tl + 3u) * SB + bb]);
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
    store4(acc_a, acc_b, acc_c, acc_d, r, t0, last);
}
