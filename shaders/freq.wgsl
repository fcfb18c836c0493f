// freq.wgsl — integer logits (Q10 log2 units) → integer frequency table: every symbol ≥ 1,
// Σ = 2^24 exactly. The one place the coder's probabilities are decided.
// CPU twin: crate/src/freq.rs `freq_table`. Composed as this file + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: FreqParams         rows, vocab (< 2^24)
//   1 storage  logits: array<i32>    read  [rows, vocab]
//   2 storage  exp_q24: array<u32>   read  [1024]  round(2^24·2^(−f/1024))
//   3 storage  freq: array<u32>      read_write [rows, vocab]
//
// Dispatch: one workgroup of WG threads per row (workgroup_id.x + 65535·workgroup_id.y).
// Steps (freq.rs):
//   1. max and the FIRST index holding it (ties → smaller index, as the CPU's strict `>`),
//   2. e_v = exp_q24[d & 1023] >> (d >> 10) of d = max − l_v (exact as a wrapping u32),
//      0 when d >> 10 ≥ 32; S = Σ e_v < vocab·2^24 < 2^40: per-thread Wide sums, then a Wide
//      tree reduction (exact, so order-independent),
//   3. sh = max(0, bitlen(S) − 32), S'' = (S >> sh) + 1, k = bitlen(S'') + 6,
//      R = floor((2^24 − vocab)·2^k / S'') < 2^31 by a 32-step long division (every thread
//      computes the same R; no broadcast needed),
//   4. freq_v = 1 + ((e_v·R) >> (k + sh)) with e_v·R < 2^55 a Wide product; Σ freq ≤ 2^24
//      (a u32 sum), and the remainder 2^24 − Σ goes to the top symbol.

struct FreqParams {
    rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
const FREQ_TOTAL: u32 = 16777216u;

@group(0) @binding(0) var<uniform> p: FreqParams;
@group(0) @binding(1) var<storage, read> logits: array<i32>;
@group(0) @binding(2) var<storage, read> exp_q24: array<u32>;
@group(0) @binding(3) var<storage, read_write> freq: array<u32>;

var<workgroup> red_a: array<u32, WG>;
var<workgroup> red_b: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + 65535u * wid.y;
    if row >= p.rows {
        return;
    }
    let base = row * p.vocab;

    // 1. (max, first index). A thread starts from its first element so that a row of
    //    i32::MIN still names index 0 as the top, like the CPU.
    var mx = i32(-2147483647 - 1);
    var top = 0xFFFFFFFFu;
    if lid < p.vocab {
        mx = logits[base + lid];
        top = lid;
    }
    for (var v = lid + WG; v < p.vocab; v += WG) {
        let l = logits[base + v];
        if l > mx {
            mx = l;
            top = v;
        }
    }
    red_a[lid] = u32(mx) ^ 0x80000000u; // order-preserving
    red_b[lid] = top;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            let a = red_a[lid];
            let b = red_a[lid + s];
            if b > a || (b == a && red_b[lid + s] < red_b[lid]) {
                red_a[lid] = b;
                red_b[lid] = red_b[lid + s];
            }
        }
        workgroupBarrier();
    }
    let max_l = i32(red_a[0] ^ 0x80000000u);
    let top_v = red_b[0];
    workgroupBarrier();

    // 2. e_v (kept in freq[] until step 4) and S.
    var sum = wide_zero();
    for (var v = lid; v < p.vocab; v += WG) {
        let d = u32(max_l - logits[base + v]);
        let n = d >> 10u;
        var e = 0u;
        if n < 32u {
            e = exp_q24[d & 1023u] >> n;
        }
        freq[base + v] = e;
        sum = wide_add(sum, Wide(0u, e));
    }
    red_a[lid] = sum.hi;
    red_b[lid] = sum.lo;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            let w = wide_add(Wide(red_a[lid], red_b[lid]), Wide(red_a[lid + s], red_b[lid + s]));
            red_a[lid] = w.hi;
            red_b[lid] = w.lo;
        }
        workgroupBarrier();
    }
    let total_e = Wide(red_a[0], red_b[0]);
    workgroupBarrier();

    // 3. The reciprocal.
    let budget = FREQ_TOTAL - p.vocab;
    let bl = wide_bit_len(total_e);
    let sh = select(0u, bl - 32u, bl > 32u);
    let s2 = wide_add(wide_shr(total_e, sh), Wide(0u, 1u));
    let k = wide_bit_len(s2) + 6u;
    let r = div_shifted(budget, k, s2);

    // 4. Frequencies, their total, the remainder to the top symbol.
    var total = 0u;
    for (var v = lid; v < p.vocab; v += WG) {
        let f = 1u + wide_shr(mul_u32(freq[base + v], r), k + sh).lo;
        freq[base + v] = f;
        total += f;
    }
    red_a[lid] = total;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red_a[lid] = red_a[lid] + red_a[lid + s];
        }
        workgroupBarrier();
    }
    storageBarrier(); // the top symbol's entry was written by another thread
    if lid == 0u {
        freq[base + top_v] += FREQ_TOTAL - red_a[0];
    }
}
