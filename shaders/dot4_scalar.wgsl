// dot4_scalar.wgsl — the exact scalar fallback of dot4_packed.wgsl for adapters without the
// `packed_4x8_integer_dot_product` language feature: the four bytes of each word sign-
// extended (shift the byte to the top, arithmetic shift back) and multiplied in i32
// (|Σ| ≤ 4·128·128 = 2^16). Same integers as dot4I8Packed by definition.
// CPU twin: the inner products of crate/src/backend/cpu/matmul.rs `dot32` / `dot32_nib` (4 at a time).

fn dot4(a: u32, b: u32) -> i32 {
    var s = 0i;
    for (var k = 0u; k < 4u; k++) {
        let sh = 24u - 8u * k;
        s += (i32(a << sh) >> 24u) * (i32(b << sh) >> 24u);
    }
    return s;
}
