// wide.wgsl — exact 64-bit integer arithmetic from 32-bit words, and the matmuls' split
// accumulator. A library, not a kernel: the engine appends it to every kernel that needs it
// (WGSL module-scope declarations are order-independent, so a kernel may call these before
// they appear; a kernel's own `requires` directive stays at the top of the composed module).
//
// CPU twins, operation by operation, with the same words and the same carries:
//   crate/src/wide.rs          Wide, mul_u32, mul_shift, div_shifted, isqrt
//   crate/src/backend/cpu/matmul.rs   SplitAcc
//
// WGSL has no 64-bit integers. Runtime u32/i32 arithmetic wraps (two's complement) like
// Rust's wrapping_* operations, and a runtime shift amount is taken modulo 32 — so every
// shift below is guarded exactly where wide.rs guards it (the `min(…, 31)` clamps), and no
// function is ever called with a shift of 32 or more where wide.rs would not be.

// A two's-complement 64-bit integer hi·2^32 + lo.
struct Wide {
    hi: u32,
    lo: u32,
}

fn wide_zero() -> Wide {
    return Wide(0u, 0u);
}

// |v| as u32 (i32::MIN → 2^31), Rust's `unsigned_abs`.
fn uabs(v: i32) -> u32 {
    return select(u32(v), 0u - u32(v), v < 0);
}

// Full 32×32→64 unsigned product from four 16×16→32 partial products (each < 2^32).
fn mul_u32(a: u32, b: u32) -> Wide {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // middle = p01 + p10 + (p00 >> 16) can reach 2^33: two adds, counting the carries.
    let m1 = p01 + p10;
    let c1 = select(0u, 1u, m1 < p01);
    let mid = m1 + (p00 >> 16u);
    let c2 = select(0u, 1u, mid < m1);
    let carry = (c1 + c2) << 16u;
    let lo = (mid << 16u) | (p00 & 0xFFFFu);
    let hi = p11 + (mid >> 16u) + carry;
    return Wide(hi, lo);
}

fn wide_from_i32(v: i32) -> Wide {
    return Wide(select(0u, 0xFFFFFFFFu, v < 0), u32(v));
}

fn wide_is_neg(w: Wide) -> bool {
    return i32(w.hi) < 0;
}

fn wide_eq(a: Wide, b: Wide) -> bool {
    return a.hi == b.hi && a.lo == b.lo;
}

fn wide_add(a: Wide, b: Wide) -> Wide {
    let lo = a.lo + b.lo;
    let c = select(0u, 1u, lo < a.lo);
    return Wide(a.hi + b.hi + c, lo);
}

fn wide_neg(a: Wide) -> Wide {
    let lo = (~a.lo) + 1u;
    let hi = (~a.hi) + select(0u, 1u, lo == 0u);
    return Wide(hi, lo);
}

fn wide_sub(a: Wide, b: Wide) -> Wide {
    return wide_add(a, wide_neg(b));
}

// Signed 32×32→64 product.
fn wide_mul_i32(a: i32, b: i32) -> Wide {
    let p = mul_u32(uabs(a), uabs(b));
    if (a < 0) != (b < 0) {
        return wide_neg(p);
    }
    return p;
}

// Arithmetic shift right by s (0..=63), rounding toward −∞.
fn wide_shr(w: Wide, s: u32) -> Wide {
    if s == 0u {
        return w;
    } else if s < 32u {
        return Wide(u32(i32(w.hi) >> s), (w.lo >> s) | (w.hi << (32u - s)));
    }
    let h = i32(w.hi);
    return Wide(u32(h >> 31u), u32(h >> min(s - 32u, 31u)));
}

// Shift left by s (0..=63); bits shifted out are lost (callers check the range first).
fn wide_shl(w: Wide, s: u32) -> Wide {
    if s == 0u {
        return w;
    } else if s < 32u {
        return Wide((w.hi << s) | (w.lo >> (32u - s)), w.lo << s);
    }
    return Wide(w.lo << min(s - 32u, 31u), 0u);
}

// Saturate to i32.
fn wide_to_i32_sat(w: Wide) -> i32 {
    let h = i32(w.hi);
    let l = i32(w.lo);
    if (h == 0 && l >= 0) || (h == -1 && l < 0) {
        return l;
    } else if h < 0 {
        return i32(-2147483647 - 1);
    }
    return 2147483647;
}

// Significant bits of a non-negative value (0 for 0).
fn wide_bit_len(w: Wide) -> u32 {
    if w.hi != 0u {
        return 64u - countLeadingZeros(w.hi);
    }
    return 32u - countLeadingZeros(w.lo);
}

fn wide_one_shl(s: u32) -> Wide {
    if s < 32u {
        return Wide(0u, 1u << s);
    }
    return Wide(1u << (s - 32u), 0u);
}

// round(w · 2^-s) (half up) for s > 0, w · 2^-s exactly for s ≤ 0, saturated to i32.
// s in −63..=62 and |w| < 2^62, as wide.rs states.
fn wide_round_shift_sat(w: Wide, s: i32) -> i32 {
    if s > 0 {
        let su = u32(s);
        return wide_to_i32_sat(wide_shr(wide_add(w, wide_one_shl(su - 1u)), su));
    } else if s == 0 {
        return wide_to_i32_sat(w);
    }
    let su = u32(-s); // Rust's unsigned_abs: i32::MIN → 2^31 in both
    let back = wide_shr(wide_shl(w, su), su);
    if !wide_eq(back, w) || (su >= 32u && !wide_eq(w, wide_zero())) {
        if wide_is_neg(w) {
            return i32(-2147483647 - 1);
        }
        return 2147483647;
    }
    return wide_to_i32_sat(wide_shl(w, su));
}

// round(a·b · 2^-s) (half up; exact left shift for s ≤ 0), saturated to i32.
fn mul_shift(a: i32, b: i32, s: i32) -> i32 {
    return wide_round_shift_sat(wide_mul_i32(a, b), s);
}

// Unsigned comparison a ≥ b (both non-negative).
fn wide_ge_unsigned(a: Wide, b: Wide) -> bool {
    return a.hi > b.hi || (a.hi == b.hi && a.lo >= b.lo);
}

// floor(n · 2^k / d) for d > 0 when the quotient fits 32 bits: restoring long division,
// one quotient bit per step (wide.rs div_shifted).
fn div_shifted(n: u32, k: u32, d: Wide) -> u32 {
    var rem = wide_shl(Wide(0u, n), k);
    var q = 0u;
    let dl = wide_bit_len(d);
    for (var j = 0u; j < 32u; j++) {
        let i = 31u - j;
        if dl + i > 64u {
            continue;
        }
        let t = wide_shl(d, i);
        if wide_ge_unsigned(rem, t) {
            rem = wide_sub(rem, t);
            q |= 1u << i;
        }
    }
    return q;
}

// floor(sqrt(v)) for any u32, bit by bit.
fn isqrt(v: u32) -> u32 {
    var rem = v;
    var root = 0u;
    var bit = 1u << 30u;
    while bit > rem {
        bit >>= 2u;
    }
    while bit != 0u {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1u) + bit;
        } else {
            root >>= 1u;
        }
        bit >>= 2u;
    }
    return root;
}

// --- the matmuls' split accumulator (cpu.rs SplitAcc) ---
//
// Exact Σ_b T_b·a_b as hi·2^16 + lo with T = hi16·2^16 + lo16 split per term (|T| < 2^30,
// a ≤ 2^12): lo gains < 2^28 per block and is folded into hi every 8 blocks (lo < 2^32);
// |hi| ≤ 48 blocks · 2^14 · 2^12 < 2^31 for the widths the engine allows (cpu.rs states the
// same bound). Value semantics: WGSL (without unrestricted_pointer_parameters) cannot pass
// a pointer to an array element, so split_add returns the new accumulator.
struct SplitAcc {
    hi: i32,
    lo: u32,
    n: u32,
}

fn split_fold(acc: SplitAcc) -> SplitAcc {
    return SplitAcc(acc.hi + i32(acc.lo >> 16u), acc.lo & 0xFFFFu, 0u);
}

fn split_add(acc: SplitAcc, t: i32, a: u32) -> SplitAcc {
    var r = SplitAcc(acc.hi + (t >> 16u) * i32(a), acc.lo + (u32(t) & 0xFFFFu) * a, acc.n + 1u);
    if r.n == 8u {
        r = split_fold(r);
    }
    return r;
}

// round(value · 2^-s) saturated to i32.
fn split_round_shift_sat(acc: SplitAcc, s: i32) -> i32 {
    let f = split_fold(acc);
    return wide_round_shift_sat(wide_add(wide_shl(wide_from_i32(f.hi), 16u), Wide(0u, f.lo)), s);
}
