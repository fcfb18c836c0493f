// add.wgsl — x += y, saturating to i32 (the residual stream).
// CPU twin: crate/src/backend/cpu/mod.rs `CpuBackend::add` (`i32::saturating_add`).
//
// Bindings (group 0):
//   0 uniform  p: ElementwiseParams  n (elements)
//   1 storage  x: array<i32>         read_write [n]
//   2 storage  y: array<i32>         read  [n]
//
// Dispatch: 1-D over n in workgroups of WG (x + 65535·WG·y).
// Bounds: the wrapping i32 sum is exact unless both operands have the same sign and the
// result's sign differs; then it saturates toward that sign, as saturating_add does.

struct ElementwiseParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read_write> x: array<i32>;
@group(0) @binding(2) var<storage, read> y: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + 65535u * WG * gid.y;
    if i >= p.n {
        return;
    }
    let a = x[i];
    let b = y[i];
    let r = a + b;
    if a >= 0 && b >= 0 && r < 0 {
        x[i] = 2147483647;
    } else if a < 0 && b < 0 && r >= 0 {
        x[i] = i32(-2147483647 - 1);
    } else {
        x[i] = r;
    }
}
