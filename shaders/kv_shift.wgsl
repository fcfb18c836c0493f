// kv_shift.wgsl — the context a sliding window keeps: reads cache rows src..src+rows of a
// layer, re-rotates each key head from position p to p − DELTA (the RoPE table's row DELTA,
// angle −δθ), re-quantises it to |·| ≤ 511 (quantize_qk, the exponents add) and writes the
// rows, values unchanged, to a scratch cache; the engine then copies the scratch to rows
// dst..dst+rows (WebGPU forbids overlapping copies within one buffer, and the two ranges
// may overlap).
// CPU twin: crate/src/backend/cpu/attention.rs `kv_shift`. Composed as this file + wide.wgsl (for
// `uabs`).
//
// Bindings (group 0):
//   0 uniform  p: KvShiftParams          rows, src (first cache row read), cache_rows, delta
//   1 storage  cache_k: array<u32>       read  [cache_rows, N_KV·HEAD_DIM/2]  i16 pairs
//   2 storage  cache_kexp: array<i32>    read  [cache_rows, N_KV]
//   3 storage  cache_v: array<u32>       read  [cache_rows, N_KV·HEAD_DIM/2]  i16 pairs
//   4 storage  rope_cos: array<i32>      read  [ctx, HEAD_DIM/2]   Q1.14 (|·| ≤ 2^14)
//   5 storage  rope_sin: array<i32>      read  [ctx, HEAD_DIM/2]
//   6 storage  out_k: array<u32>         read_write [rows, N_KV·HEAD_DIM/2]
//   7 storage  out_kexp: array<i32>      read_write [rows, N_KV]
//   8 storage  out_v: array<u32>         read_write [rows, N_KV·HEAD_DIM/2]
//
// Dispatch: (ceil(N_KV / WG), rows, 1); one thread per (row, kv head). HEAD_DIM (even,
// ≤ 256) and N_KV are overrides.
// Bounds: |x| ≤ 2^15 and |cos|, |sin| ≤ 2^14, so x0·c ± x1·s ≤ 2^30: exact in i32, then
// rounded half up by an arithmetic shift (cpu.rs uses round_shift_sat_i64: same bits).

struct KvShiftParams {
    rows: u32,
    src: u32,
    cache_rows: u32,
    delta: u32,
}

const WG: u32 = 64u;
const QK_INT_MAX: u32 = 511u;
const ROPE_FRAC: u32 = 14u;
override HEAD_DIM: u32 = 64u;
override N_KV: u32 = 3u;

@group(0) @binding(0) var<uniform> p: KvShiftParams;
@group(0) @binding(1) var<storage, read> cache_k: array<u32>;
@group(0) @binding(2) var<storage, read> cache_kexp: array<i32>;
@group(0) @binding(3) var<storage, read> cache_v: array<u32>;
@group(0) @binding(4) var<storage, read> rope_cos: array<i32>;
@group(0) @binding(5) var<storage, read> rope_sin: array<i32>;
@group(0) @binding(6) var<storage, read_write> out_k: array<u32>;
@group(0) @binding(7) var<storage, read_write> out_kexp: array<i32>;
@group(0) @binding(8) var<storage, read_write> out_v: array<u32>;

var<private> rot: array<i32, 256>;

fn rs(x: u32, e: u32) -> u32 {
    if e == 0u {
        return x;
    }
    return (x >> e) + ((x >> (e - 1u)) & 1u);
}

fn qk(x: i32, e: u32) -> i32 {
    let q = i32(rs(uabs(x), e));
    return select(q, -q, x < 0);
}

fn lo16(w: u32) -> i32 {
    return (i32(w) << 16u) >> 16u;
}

fn hi16(w: u32) -> i32 {
    return i32(w) >> 16u;
}

fn pack_i16(a: i32, b: i32) -> u32 {
    return (u32(a) & 0xFFFFu) | (u32(b) << 16u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let r = gid.y;
    if h >= N_KV || r >= p.rows || p.src + r >= p.cache_rows {
        return;
    }
    let half = HEAD_DIM / 2u;
    let words = N_KV * half; // u32 words per cache row
    let sw = (p.src + r) * words + h * half;
    let tab = p.delta * half;
    var m = 0u;
    for (var i = 0u; i < half; i++) {
        let w = cache_k[sw + i];
        let x0 = lo16(w);
        let x1 = hi16(w);
        let c = rope_cos[tab + i];
        let s = rope_sin[tab + i];
        let a = (x0 * c + x1 * s + (1 << (ROPE_FRAC - 1u))) >> ROPE_FRAC;
        let b = (x1 * c - x0 * s + (1 << (ROPE_FRAC - 1u))) >> ROPE_FRAC;
        rot[2u * i] = a;
        rot[2u * i + 1u] = b;
        m = max(m, max(uabs(a), uabs(b)));
    }
    var e = 0u;
    while rs(m, e) > QK_INT_MAX {
        e += 1u;
    }
    let ow = r * words + h * half;
    for (var i = 0u; i < half; i++) {
        out_k[ow + i] = pack_i16(qk(rot[2u * i], e), qk(rot[2u * i + 1u], e));
        out_v[ow + i] = cache_v[sw + i];
    }
    out_kexp[r * N_KV + h] = cache_kexp[(p.src + r) * N_KV + h] + i32(e);
}
