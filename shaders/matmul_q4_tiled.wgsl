// matmul_q4_tiled.wgsl — the integers of matmul_q4.wgsl for batches (prefill): a workgroup
// computes a tile of TR rows × TT tokens and stages, a slab of SB blocks at a time, the tile's
// weights and activations in workgroup memory. A weight word then comes from global memory
// once per TT = 16 tokens (matmul_q4.wgsl: once per 4) and an activation word once per TR = 64
// rows. The engine runs it for batches of at least 16 rows and matmul_q4.wgsl for fewer
// (decoding: 1–4 rows, where the tile would be mostly empty).
// CPU twin: crate/src/backend/cpu/matmul.rs `dot_q4` (via `matmul_q4`), accumulator `SplitAcc`.
// Composed as dot4_{packed|scalar}.wgsl + this file + matmul_common.wgsl + matmul_tiled.wgsl
// + wide.wgsl (the tile's constants TR, TQ, TT, SB, WG and its activation slab are in
// matmul_tiled.wgsl).
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

override NB: u32 = 18u;

// Bindings 0 and 3–7 (and MatmulParams) are declared in matmul_common.wgsl.
@group(0) @binding(1) var<storage, read> nib: array<u32>;
@group(0) @binding(2) var<storage, read> dm: array<u32>;

// The slab's weights: [SB·4, TR] nibble words and [SB, TR] (d, m) words.
var<workgroup> s_nib: array<u32, 1024>; // TR · SB · 4
var<workgroup> s_dm: array<u32, 256>; // TR · SB

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
        stage_acts(li, tt0, s, last);
        workgroupBarrier();
        for (var bb = 0u; bb < SB; bb++) {
            if s + bb < NB {
                let o = 4u * bb * TR + rl;
                let w = vec4<u32>(s_nib[o], s_nib[o + TR], s_nib[o + 2u * TR], s_nib[o + 3u * TR]);
                let dmw = s_dm[bb * TR + rl];
                let d = i32(dmw << 16u) >> 16u;
                let m = i32(dmw) >> 16u;
                let tl = 4u * g;
                let xa = q4_block(w, slab_acts(tl, bb), d, m, s_ss[tl * SB + bb]);
                let xb = q4_block(w, slab_acts(tl + 1u, bb), d, m, s_ss[(tl + 1u) * SB + bb]);
                let xc = q4_block(w, slab_acts(tl + 2u, bb), d, m, s_ss[(tl + 2u) * SB + bb]);
                let xd = q4_block(w, slab_acts(tl + 3u, bb), d, m, s_ss[(tl + 3u) * SB + bb]);
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
