// kv_store.wgsl — writes rows of rotated keys (Q10) and values (Q8) into a layer's KV cache:
// each key head re-quantised to |·| ≤ 511 with a power-of-two scale (quantize_qk), values
// clamped to i16.
// CPU twin: crate/src/backend/cpu/attention.rs `kv_store` and `quantize_qk`. Composed as this file +
// wide.wgsl (for `uabs`).
//
// Bindings (group 0):
//   0 uniform  p: KvStoreParams      rows, cache_rows (bound of the cache's row index)
//   1 storage  k: array<i32>         read  [rows, N_KV·HEAD_DIM]
//   2 storage  v: array<i32>         read  [rows, N_KV·HEAD_DIM]
//   3 storage  dst: array<u32>       read  [rows]   cache row of each row (slot·cache_len + position)
//   4 storage  cache_k: array<u32>   read_write [cache_rows, N_KV·HEAD_DIM/2]  i16 pairs: element 2i low, 2i+1 high
//   5 storage  cache_kexp: array<i32> read_write [cache_rows, N_KV]
//   6 storage  cache_v: array<u32>   read_write [cache_rows, N_KV·HEAD_DIM/2]  i16 pairs
//
// Dispatch: (ceil(N_KV / WG), rows, 1); one thread per (row, kv head) writes that head's
// HEAD_DIM/2 key words, its exponent and its HEAD_DIM/2 value words whole (no two threads
// share a word). HEAD_DIM (even) and N_KV are overrides.
// Bounds: m = max |k| < 2^32; the exponent e ≤ 23 keeps every shift below 32; rounded half
// up, |q| ≤ 511 fits i16.

struct KvStoreParams {
    rows: u32,
    cache_rows: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;
const QK_INT_MAX: u32 = 511u;
override HEAD_DIM: u32 = 64u;
override N_KV: u32 = 3u;

@group(0) @binding(0) var<uniform> p: KvStoreParams;
@group(0) @binding(1) var<storage, read> k: array<i32>;
@group(0) @binding(2) var<storage, read> v: array<i32>;
@group(0) @binding(3) var<storage, read> dst: array<u32>;
@group(0) @binding(4) var<storage, read_write> cache_k: array<u32>;
@group(0) @binding(5) var<storage, read_write> cache_kexp: array<i32>;
@group(0) @binding(6) var<storage, read_write> cache_v: array<u32>;

// Round-half-up shift right of a magnitude (cpu.rs quantize_qk's `rs`).
fn rs(x: u32, e: u32) -> u32 {
    if e == 0u {
        return x;
    }
    return (x >> e) + ((x >> (e - 1u)) & 1u);
}

fn pack_i16(a: i32, b: i32) -> u32 {
    return (u32(a) & 0xFFFFu) | (u32(b) << 16u);
}

fn qk(x: i32, e: u32) -> i32 {
    let q = i32(rs(uabs(x), e));
    return select(q, -q, x < 0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let t = gid.y;
    if h >= N_KV || t >= p.rows {
        return;
    }
    let crow = dst[t];
    if crow >= p.cache_rows {
        return; // the engine never asks for this; never write out of range
    }
    let kvd = N_KV * HEAD_DIM;
    let src = t * kvd + h * HEAD_DIM;
    var m = 0u;
    for (var i = 0u; i < HEAD_DIM; i++) {
        m = max(m, uabs(k[src + i]));
    }
    var e = 0u;
    while rs(m, e) > QK_INT_MAX {
        e += 1u;
    }
    let out = (crow * kvd + h * HEAD_DIM) / 2u;
    for (var i = 0u; i < HEAD_DIM / 2u; i++) {
        cache_k[out + i] = pack_i16(qk(k[src + 2u * i], e), qk(k[src + 2u * i + 1u], e));
        cache_v[out + i] = pack_i16(clamp(v[src + 2u * i], -32768, 32767), clamp(v[src + 2u * i + 1u], -32768, 32767));
    }
    cache_kexp[crow * N_KV + h] = i32(e);
}
