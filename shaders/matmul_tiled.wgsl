// matmul_tiled.wgsl — what the two tiled matmul kernels share (matmul_q4_tiled,
// matmul_q8_tiled): the tile's geometry, the slab of activations in workgroup memory and its
// staging. A library, not a kernel: appended to each after the kernel (shaders.rs `compose`);
// it uses the bindings of matmul_common.wgsl and the kernel's override NB.
// CPU twin: none of its own (the kernels' twins are cpu/matmul.rs `matmul_q4`, `matmul_q8`).

const TR: u32 = 64u; // rows per tile
const TQ: u32 = 4u; // token quads per tile
const TT: u32 = 16u; // tokens per tile (TQ · 4)
const SB: u32 = 4u; // blocks per slab
const WG: u32 = 256u; // invocations per workgroup (TR · TQ)

// The slab's activations: [TT, SB·8] words and [TT, SB] (a, X) words.
var<workgroup> s_q: array<u32, 512>; // TT · SB · 8
var<workgroup> s_ss: array<u32, 64>; // TT · SB

// Stages blocks s … s+SB−1 of the tile's tokens tt0 … tt0+TT−1 (those past the batch as its
// last token `last`, blocks past NB as zeros, never used), invocation li of WG doing its share.
fn stage_acts(li: u32, tt0: u32, s: u32, last: u32) {
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
}

// The 8 activation words of slab block bb of tile token tl.
fn slab_acts(tl: u32, bb: u32) -> array<u32, 8> {
    let o = tl * SB * 8u + bb * 8u;
    return array<u32, 8>(s_q[o], s_q[o + 1u], s_q[o + 2u], s_q[o + 3u], s_q[o + 4u], s_q[o + 5u], s_q[o + 6u], s_q[o + 7u]);
}
