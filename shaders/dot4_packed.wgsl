requires packed_4x8_integer_dot_product;

// dot4_packed.wgsl — Σ of the four products of signed bytes of two packed words, with the
// WGSL built-in (exact: |Σ| ≤ 4·128·128 = 2^16). The engine prepends this file to a matmul
// kernel when the adapter reports the `packed_4x8_integer_dot_product` language feature;
// otherwise it prepends dot4_scalar.wgsl, which gives the same integers.
// CPU twin: the inner products of crate/src/backend/cpu/matmul.rs `dot32` / `dot32_nib` (4 at a time).

fn dot4(a: u32, b: u32) -> i32 {
    return dot4I8Packed(a, b);
}
