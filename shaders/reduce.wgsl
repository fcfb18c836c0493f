// reduce.wgsl — workgroup reductions of u32 values, shared by the kernels that reduce a row
// in one workgroup (rmsnorm, quantize, attention, ranges). A library, not a kernel: appended
// after the kernel (shaders.rs `compose`); it uses the kernel's workgroup size WG (a power of
// two). Every invocation of the workgroup must call it (it holds barriers), and all get the
// result. Max and wrapping-free sums of u32 do not depend on the order of the tree, so any
// WG gives the same integers.
// CPU twin: none of its own (the kernels' twins reduce in order: the same integers).

var<workgroup> red: array<u32, WG>;

fn reduce_max(lid: u32, v: u32) -> u32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// The caller bounds the sum below 2^32 (each kernel says why).
fn reduce_sum(lid: u32, v: u32) -> u32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
