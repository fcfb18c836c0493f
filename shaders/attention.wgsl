// attention.wgsl — causal attention of query rows (all heads, rotated, Q10) over a layer's
// KV cache; output Q23. Each row has its own position and cache slot, so one batch may hold
// rows of several independent sequences.
// CPU twin: crate/src/backend/cpu/attention.rs `attention_row` (with `quantize_qk`). Composed as this
// file + reduce.wgsl + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: AttentionParams    rows, row0 (first row of this dispatch), cache_len
//   1 storage  q: array<i32>         read  [rows, N_HEADS·HEAD_DIM]
//   2 storage  rowinfo: array<u32>   read  [rows, 2]  (position, base); cache row of position j = base + j
//   3 storage  cache_k: array<u32>   read  [slots·cache_len, N_KV·HEAD_DIM/2]  i16 pairs, |k| ≤ 511
//   4 storage  cache_kexp: array<i32> read [slots·cache_len, N_KV]
//   5 storage  cache_v: array<u32>   read  [slots·cache_len, N_KV·HEAD_DIM/2]  i16 pairs, Q8
//   6 storage  exp_q15: array<u32>   read  [256]  round(2^15·2^(−f/256))
//   7 storage  scratch: array<u32>   read_write [dispatched rows·N_HEADS, cache_len]  scores, then p, then p'
//   8 storage  out: array<i32>       read_write [rows, N_HEADS·HEAD_DIM]
//
// Dispatch: (N_HEADS, rows in this dispatch, 1) workgroups of WG threads; workgroup (h, y)
// does head h of row row0 + y. Threads split the head's dimensions (q, output) and the
// positions (scores); the row's score vector lives in `scratch`, sized by the engine.
// HEAD_DIM (≤ MAX_HD, even), N_HEADS, N_KV are overrides.
//
// Bounds (as cpu.rs): q·log2(e)/8 is a Wide product (mul_shift); q and k are ≤ 511 so
// |q·k| ≤ 64·511² < 2^24 (i32, HEAD_DIM ≤ 64; < 2^26 at MAX_HD); the score shift is a Wide
// rounding shift (a left shift saturates); max − t is exact as a wrapping u32 (t ≤ max);
// p ≤ 2^15 and Σp ≤ ctx·2^15 ≤ 2^28; p·2^15 + Σp/2 < 2^31; Σ p'·v over positions is bounded by
// (2^15 + ctx/2)·2^15 < 2^31 in absolute value, so any summation order gives the same i32.
// The u32 max/sum reductions are exact, hence order-independent.

struct AttentionParams {
    rows: u32,
    row0: u32,
    cache_len: u32,
    _pad: u32,
}

const WG: u32 = 64u;
const MAX_HD: u32 = 256u;
const Q_SCALE_Q16: i32 = 11819;
const QK_INT_MAX: u32 = 511u;
override HEAD_DIM: u32 = 64u;
override N_HEADS: u32 = 9u;
override N_KV: u32 = 3u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> rowinfo: array<u32>;
@group(0) @binding(3) var<storage, read> cache_k: array<u32>;
@group(0) @binding(4) var<storage, read> cache_kexp: array<i32>;
@group(0) @binding(5) var<storage, read> cache_v: array<u32>;
@group(0) @binding(6) var<storage, read> exp_q15: array<u32>;
@group(0) @binding(7) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(8) var<storage, read_write> out: array<i32>;

var<workgroup> qs_sh: array<i32, MAX_HD>;
var<workgroup> qi_sh: array<i32, MAX_HD>;

fn rs(x: u32, e: u32) -> u32 {
    if e == 0u {
        return x;
    }
    return (x >> e) + ((x >> (e - 1u)) & 1u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = p.row0 + wid.y;
    if t >= p.rows {
        return;
    }
    let qd = N_HEADS * HEAD_DIM;
    let kvd = N_KV * HEAD_DIM;
    let kvh = h / (N_HEADS / N_KV);
    let n = rowinfo[2u * t] + 1u;
    let base = rowinfo[2u * t + 1u];
    let sc = (wid.y * N_HEADS + h) * p.cache_len;

    // q scaled by log2(e)/8 and re-quantised to ≤ 511 (quantize_qk).
    var m = 0u;
    for (var i = lid; i < HEAD_DIM; i += WG) {
        let qs = mul_shift(q[t * qd + h * HEAD_DIM + i], Q_SCALE_Q16, 16);
        qs_sh[i] = qs;
        m = max(m, uabs(qs));
    }
    m = reduce_max(lid, m);
    var e = 0u;
    while rs(m, e) > QK_INT_MAX {
        e += 1u;
    }
    let eq = i32(e);
    for (var i = lid; i < HEAD_DIM; i += WG) {
        let x = qs_sh[i];
        let qv = i32(rs(uabs(x), e));
        qi_sh[i] = select(qv, -qv, x < 0);
    }
    workgroupBarrier();

    // Scores t_j = (q·k_j)·2^(eq + ek_j − 12), Q8 log2 units.
    var tmax = i32(-2147483647 - 1);
    for (var j = lid; j < n; j += WG) {
        let kw = ((base + j) * kvd + kvh * HEAD_DIM) / 2u;
        var dot = 0i;
        for (var i = 0u; i < HEAD_DIM / 2u; i++) {
            let w = cache_k[kw + i];
            dot += qi_sh[2u * i] * (i32(w << 16u) >> 16u) + qi_sh[2u * i + 1u] * (i32(w) >> 16u);
        }
        let ek = cache_kexp[(base + j) * N_KV + kvh];
        let s = wide_round_shift_sat(wide_from_i32(dot), 12 - eq - ek);
        scratch[sc + j] = u32(s);
        tmax = max(tmax, s);
    }
    // Signed max through the order-preserving map i32 → u32 (flip the sign bit).
    tmax = i32(reduce_max(lid, u32(tmax) ^ 0x80000000u) ^ 0x80000000u);

    // p_j = exp2_q15[frac] >> int of max − t_j; each thread revisits its own positions.
    var sum = 0u;
    for (var j = lid; j < n; j += WG) {
        let d = u32(tmax - i32(scratch[sc + j]));
        let k = d >> 8u;
        var pj = 0u;
        if k < 16u {
            pj = exp_q15[d & 255u] >> k;
        }
        scratch[sc + j] = pj;
        sum += pj;
    }
    sum = reduce_sum(lid, sum); // ≥ 2^15: the maximum contributes exp_q15[0]
    for (var j = lid; j < n; j += WG) {
        let pj = scratch[sc + j];
        var pn = 0u;
        if pj != 0u {
            pn = ((pj << 15u) + sum / 2u) / sum;
        }
        scratch[sc + j] = pn;
    }
    storageBarrier();

    // out_i = Σ_j p'_j · v_j,i (Q8 · Q0.15 = Q23).
    for (var i = lid; i < HEAD_DIM; i += WG) {
        var o = 0i;
        let half = i & 1u;
        for (var j = 0u; j < n; j++) {
            let pn = scratch[sc + j];
            if pn == 0u {
                continue;
            }
            let w = cache_v[((base + j) * kvd + kvh * HEAD_DIM + i) / 2u];
            let v = select(i32(w << 16u) >> 16u, i32(w) >> 16u, half == 1u);
            o += i32(pn) * v;
        }
        out[t * qd + h * HEAD_DIM + i] = o;
    }
}
