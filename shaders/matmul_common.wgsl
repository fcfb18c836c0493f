// matmul_common.wgsl — what the four matmul kernels share (matmul_q4, matmul_q8 and their
// tiled variants): one block's product T for either weight format, and the store of an
// invocation's four tokens, an activation block's words, and the bindings the four have in common (the weights, bindings 1
// and 2, are each kernel's own). A library, not a kernel: appended to each matmul after the
// kernel (shaders.rs `compose`).
// CPU twin: crate/src/backend/cpu/matmul.rs `dot_q4`, `dot_q8`.

struct MatmulParams {
    rows: u32,
    tokens: u32,
    frac_out: i32,
    tok0: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(3) var<storage, read> e_row: array<i32>;
@group(0) @binding(4) var<storage, read> q: array<u32>;
@group(0) @binding(5) var<storage, read> scale_sum: array<u32>;
@group(0) @binding(6) var<storage, read> row_exp: array<i32>;
@group(0) @binding(7) var<storage, read_write> out: array<i32>;

// The 8 activation words of block b of token t, from memory (the per-row kernels; the tiled
// ones read their slab: matmul_tiled.wgsl `slab_acts`). NB is the kernel's override.
fn acts(t: u32, b: u32) -> array<u32, 8> {
    let o = (t * NB + b) * 8u;
    return array<u32, 8>(q[o], q[o + 1u], q[o + 2u], q[o + 3u], q[o + 4u], q[o + 5u], q[o + 6u], q[o + 7u]);
}

// One Q4_1 block of one token: T = d·(S − 8X) + m·X, with S = Σ nib·q over the block's
// nibble words w (element 4k+j in the low nibble of byte j of word k, element 16+4k+j in its
// high nibble), its 8 activation words a and mw = a | X << 16; returns (T, a).
// Bounds: a masked nibble word is 4 valid non-negative i8 (0..15), so
// |S| ≤ 15·127·32 < 2^16; S' = S − 8X, |S'| ≤ 8·127·32 = 32512, |X| ≤ 4064, |d|,|m| ≤ 8191
// ⇒ |T| < 2^29.
fn q4_block(w: vec4<u32>, a: array<u32, 8>, d: i32, m: i32, mw: u32) -> vec2<i32> {
    var s = dot4(w.x & 0x0F0F0F0Fu, a[0]);
    s += dot4(w.y & 0x0F0F0F0Fu, a[1]);
    s += dot4(w.z & 0x0F0F0F0Fu, a[2]);
    s += dot4(w.w & 0x0F0F0F0Fu, a[3]);
    s += dot4((w.x >> 4u) & 0x0F0F0F0Fu, a[4]);
    s += dot4((w.y >> 4u) & 0x0F0F0F0Fu, a[5]);
    s += dot4((w.z >> 4u) & 0x0F0F0F0Fu, a[6]);
    s += dot4((w.w >> 4u) & 0x0F0F0F0Fu, a[7]);
    let x = i32(mw) >> 16u;
    return vec2<i32>(d * (s - 8 * x) + m * x, i32(mw & 0xFFFFu));
}

// One Q8_0 block of one token: T = d·S with S = Σ w·q over its 8 weight words and 8
// activation words; returns (T, a). Bounds: |S| ≤ 127·128·32 < 2^19, |d| ≤ 2047 ⇒ |T| < 2^30.
fn q8_block(wb: array<u32, 8>, a: array<u32, 8>, d: i32, mw: u32) -> vec2<i32> {
    var s = 0i;
    for (var i = 0u; i < 8u; i++) {
        s += dot4(wb[i], a[i]);
    }
    return vec2<i32>(d * s, i32(mw & 0xFFFFu));
}

// Row r's outputs for the dispatch's tokens t0 … t0+3 (those up to `last` = tokens − 1):
// each sum rounded and shifted by e_r − exp_t − frac_out, saturated to i32.
fn store4(acc_a: SplitAcc, acc_b: SplitAcc, acc_c: SplitAcc, acc_d: SplitAcc, r: u32, t0: u32, last: u32) {
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
