// ranges.wgsl — the coder's range of a known symbol in each row's frequency table:
// (cum, freq) = (Σ_{v < s} freq[v], freq[s]) for s = symbols[row]. What compression reads back
// instead of the table: 8 bytes per row rather than 4·vocab.
// CPU twin: crate/src/coder.rs `cum_freq`. Composed as this file + reduce.wgsl + wide.wgsl.
//
// Bindings (group 0):
//   0 uniform  p: FreqParams         rows, vocab
//   1 storage  freq: array<u32>      read  [rows, vocab]  (freq.wgsl's output: Σ = 2^24)
//   2 storage  symbols: array<u32>   read  [rows]  each < vocab (checked by the host)
//   3 storage  ranges: array<u32>    read_write [rows, 2]  (cum, freq)
//
// Dispatch: one workgroup of WG threads per row (workgroup_id.x + 65535·workgroup_id.y).
// Every partial sum is at most Σ freq = 2^24, so the u32 sums are exact in any order: the
// strided per-thread sums and the tree reduction give the CPU's left-to-right sum.

struct FreqParams {
    rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: FreqParams;
@group(0) @binding(1) var<storage, read> freq: array<u32>;
@group(0) @binding(2) var<storage, read> symbols: array<u32>;
@group(0) @binding(3) var<storage, read_write> ranges: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + 65535u * wid.y;
    if row >= p.rows {
        return;
    }
    let base = row * p.vocab;
    let s = min(symbols[row], p.vocab - 1u);
    var acc = 0u;
    for (var v = lid; v < s; v += WG) {
        acc += freq[base + v];
    }
    let below = reduce_sum(lid, acc);
    if lid == 0u {
        ranges[2u * row] = below;
        ranges[2u * row + 1u] = freq[base + s];
    }
}
