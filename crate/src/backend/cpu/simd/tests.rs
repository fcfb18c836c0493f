//! Every [`Isa`] that runs here against the scalar oracles of [`super::super`]: matmul
//! kernels, the engine's weight layout, the attention loops.

use super::super::{dot_q4, dot_q8, matmul_q4_with, matmul_q8_with, quantize, CpuQ4, CpuQ8};
use super::*;
use crate::pack::{Q4Matrix, Q8Matrix};
use crate::tiny::Rng;
// On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn act(r: &mut Rng, tokens: usize, width: usize, extreme: bool) -> QAct {
    let z: Vec<i32> = (0..tokens * width)
        .map(|i| {
            if extreme {
                [i32::MAX, i32::MIN, 1, -1][i % 4]
            } else {
                (r.next_u64() as i32) >> (r.below(28) as u32)
            }
        })
        .collect();
    quantize(&z, width, 3)
}

fn q4_matrix(r: &mut Rng, rows: usize, cols: usize, extreme: bool) -> Q4Matrix {
    let nb = cols / 32;
    let ext = |r: &mut Rng, v: i16| {
        if extreme {
            [v, -v][r.below(2) as usize]
        } else {
            (r.below(2 * v as u64 + 1) as i32 - v as i32) as i16
        }
    };
    Q4Matrix {
        rows,
        cols,
        nib: (0..rows * cols / 2)
            .map(|_| {
                if extreme {
                    [0xF0, 0x0F, 0xFF][r.below(3) as usize]
                } else {
                    r.below(256) as u8
                }
            })
            .collect(),
        d: (0..rows * nb).map(|_| ext(r, 8191)).collect(),
        m: (0..rows * nb).map(|_| ext(r, 8191)).collect(),
        e: (0..rows).map(|_| r.below(30) as i8).collect(),
    }
}

fn q8_matrix(r: &mut Rng, rows: usize, cols: usize, extreme: bool) -> Q8Matrix {
    let nb = cols / 32;
    Q8Matrix {
        rows,
        cols,
        q: (0..rows * cols)
            .map(|_| if extreme { -128 } else { r.next_u64() as i8 })
            .collect(),
        d: (0..rows * nb)
            .map(|_| {
                if extreme {
                    [2047, -2047][r.below(2) as usize]
                } else {
                    (r.below(4095) as i32 - 2047) as i16
                }
            })
            .collect(),
        e: (0..rows).map(|_| r.below(30) as i8).collect(),
    }
}

/// Every implementation that runs here against `dot_q4` on the pack's matrix, for every
/// output (full groups, tail rows, every token count mod 4).
fn check_q4(w: &Q4Matrix, x: &QAct, frac_out: i32) {
    let (rows, cols, nb) = (w.rows, w.cols, w.cols / 32);
    let cw = CpuQ4::new(w);
    let isas = Isa::available();
    let got: Vec<Vec<i32>> = isas.iter().map(|&isa| matmul_q4_with(isa, &cw, x, frac_out)).collect();
    let want = |row: usize, t: usize| {
        dot_q4(
            &w.nib[row * cols / 2..(row + 1) * cols / 2],
            &w.d[row * nb..(row + 1) * nb],
            &w.m[row * nb..(row + 1) * nb],
            w.e[row] as i32,
            &x.q[t * cols..(t + 1) * cols],
            &x.a[t * nb..(t + 1) * nb],
            &x.sum[t * nb..(t + 1) * nb],
            x.exp[t],
            frac_out,
        )
    };
    for row in 0..rows {
        for t in 0..x.tokens {
            let want = want(row, t);
            for (isa, g) in isas.iter().zip(&got) {
                assert_eq!(g[t * rows + row], want, "{isa:?} row {row} token {t}");
            }
        }
    }
    // Two groups per call at any token count (the matmul takes pairs only for batches).
    for &isa in &isas {
        for g in (0..(rows / GROUP).saturating_sub(1)).step_by(2) {
            let mut o = vec![0; 2 * GROUP * x.tokens];
            groups_q4(isa, &cw, g, 2, x, frac_out, &mut o);
            for (i, t) in (0..2 * GROUP).flat_map(|i| (0..x.tokens).map(move |t| (i, t))) {
                assert_eq!(
                    o[i * x.tokens + t],
                    want(GROUP * g + i, t),
                    "{isa:?} pair {g} row {i} token {t}"
                );
            }
        }
    }
}

fn check_q8(w: &Q8Matrix, x: &QAct, frac_out: i32) {
    let (rows, cols, nb) = (w.rows, w.cols, w.cols / 32);
    let cw = CpuQ8::new(w);
    let isas = Isa::available();
    let got: Vec<Vec<i32>> = isas.iter().map(|&isa| matmul_q8_with(isa, &cw, x, frac_out)).collect();
    let want = |row: usize, t: usize| {
        dot_q8(
            &w.q[row * cols..(row + 1) * cols],
            &w.d[row * nb..(row + 1) * nb],
            w.e[row] as i32,
            &x.q[t * cols..(t + 1) * cols],
            &x.a[t * nb..(t + 1) * nb],
            x.exp[t],
            frac_out,
        )
    };
    for row in 0..rows {
        for t in 0..x.tokens {
            let want = want(row, t);
            for (isa, g) in isas.iter().zip(&got) {
                assert_eq!(g[t * rows + row], want, "{isa:?} row {row} token {t}");
            }
        }
    }
    for &isa in &isas {
        for g in (0..(rows / GROUP).saturating_sub(1)).step_by(2) {
            let mut o = vec![0; 2 * GROUP * x.tokens];
            groups_q8(isa, &cw, g, 2, x, frac_out, &mut o);
            for (i, t) in (0..2 * GROUP).flat_map(|i| (0..x.tokens).map(move |t| (i, t))) {
                assert_eq!(
                    o[i * x.tokens + t],
                    want(GROUP * g + i, t),
                    "{isa:?} pair {g} row {i} token {t}"
                );
            }
        }
    }
}

#[test]
fn isas_that_run_here() {
    let isas = Isa::available();
    assert_eq!(isas[0], Isa::Portable);
    assert!(isas.contains(&Isa::best()));
    #[cfg(all(
        target_arch = "wasm32",
        target_feature = "simd128",
        not(target_feature = "relaxed-simd")
    ))]
    assert_eq!(Isa::best(), Isa::Simd128);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
    assert_eq!(Isa::best(), Isa::RelaxedSimd);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        Isa::best(),
        match (
            std::arch::is_x86_feature_detected!("avx2"),
            std::arch::is_x86_feature_detected!("avxvnni"),
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni"),
        ) {
            (true, _, true) => Isa::Avx512Vnni,
            (true, true, false) => Isa::AvxVnni,
            (true, false, false) => Isa::Avx2,
            _ => Isa::Portable,
        }
    );
}

/// The layout keeps every weight (`CpuQ4::block` reads the pack's bytes back).
#[test]
fn q4_layout_round_trips() {
    let mut r = Rng(20);
    let w = q4_matrix(&mut r, 19, 96, false);
    let cw = CpuQ4::new(&w);
    for g in 0..2 {
        for i in 0..GROUP {
            for b in 0..3 {
                let rr = g * GROUP + i;
                assert_eq!(cw.block(g, i, b)[..], w.nib[rr * 48 + 16 * b..rr * 48 + 16 * (b + 1)]);
            }
        }
    }
}

/// The layouts made in place (`from_matrix`) are what their definitions (`CpuQ4`, `CpuQ8`)
/// say, weight by weight, with full groups and tail rows.
#[test]
fn layouts_follow_their_definition() {
    let mut r = Rng(23);
    for (rows, cols) in [(19, 96), (16, 576), (8, 1536), (3, 64), (27, 1024)] {
        let (nb, full) = (cols / 32, rows / GROUP * GROUP);
        let w = q4_matrix(&mut r, rows, cols, false);
        let cw = CpuQ4::new(&w);
        // Element j (0..32) of row rr's block b: ggml's order.
        let el = |rr: usize, b: usize, j: usize| {
            let byte = w.nib[rr * cols / 2 + 16 * b + j % 16];
            if j < 16 {
                byte & 15
            } else {
                byte >> 4
            }
        };
        for rr in 0..full {
            let (g, i) = (rr / GROUP, rr % GROUP);
            for b in 0..nb {
                for (p, e) in (0..4).flat_map(|p| (0..4).map(move |e| (p, e))) {
                    let want = el(rr, b, 8 * p + e) | el(rr, b, 8 * p + 4 + e) << 4;
                    assert_eq!(
                        cw.w[(g * nb + b) * 128 + 32 * p + 4 * i + e],
                        want,
                        "Q4 {rows}×{cols} row {rr} block {b}"
                    );
                }
                assert_eq!(cw.d[(g * nb + b) * GROUP + i], w.d[rr * nb + b]);
                assert_eq!(cw.m[(g * nb + b) * GROUP + i], w.m[rr * nb + b]);
            }
        }
        assert_eq!(
            (cw.w.len(), cw.d.len(), cw.m.len()),
            (full * cols / 2, full * nb, full * nb)
        );
        assert_eq!(cw.e, w.e[..full]);
        assert_eq!((cw.tail.rows, cw.tail.cols), (rows - full, cols));
        assert_eq!(cw.tail.nib, w.nib[full * cols / 2..]);
        assert_eq!(
            (&cw.tail.d[..], &cw.tail.m[..], &cw.tail.e[..]),
            (&w.d[full * nb..], &w.m[full * nb..], &w.e[full..])
        );

        let w = q8_matrix(&mut r, rows, cols, false);
        let cw = CpuQ8::new(&w);
        for rr in 0..full {
            let (g, i) = (rr / GROUP, rr % GROUP);
            for b in 0..nb {
                for j in 0..32 {
                    let at = (g * nb + b) * 256 + 32 * (j / 4) + 4 * i + j % 4;
                    assert_eq!(
                        cw.q[at],
                        w.q[rr * cols + 32 * b + j],
                        "Q8 {rows}×{cols} row {rr} block {b}"
                    );
                }
                assert_eq!(cw.d[(g * nb + b) * GROUP + i], w.d[rr * nb + b]);
                if !cw.ws.is_empty() {
                    let sum: i16 = w.q[rr * cols + 32 * b..rr * cols + 32 * (b + 1)]
                        .iter()
                        .map(|&v| v as i16)
                        .sum();
                    assert_eq!(cw.ws[(g * nb + b) * GROUP + i], sum);
                }
            }
        }
        let relaxed = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));
        assert_eq!(
            (cw.q.len(), cw.d.len(), cw.ws.len()),
            (full * cols, full * nb, if relaxed { full * nb } else { 0 })
        );
        assert_eq!(cw.e, w.e[..full]);
        assert_eq!(
            (cw.tail.rows, &cw.tail.q[..], &cw.tail.d[..], &cw.tail.e[..]),
            (rows - full, &w.q[full * cols..], &w.d[full * nb..], &w.e[full..])
        );
    }
}

#[test]
fn q4_engine_layout_equals_scalar() {
    let mut r = Rng(21);
    for (rows, cols, tokens, extreme) in [
        (21, 1536, 9, false),
        (8, 64, 4, true),
        (16, 576, 13, false),
        (11, 1536, 7, true),
        (3, 288, 1, false),
        (16, 96, 2, false),
        (24, 576, 6, false),
    ] {
        let w = q4_matrix(&mut r, rows, cols, extreme);
        let x = act(&mut r, tokens, cols, extreme);
        check_q4(&w, &x, 10);
    }
}

#[test]
fn q8_engine_layout_equals_scalar() {
    let mut r = Rng(22);
    for (rows, cols, tokens, extreme) in [
        (22, 1024, 8, false),
        (8, 1024, 5, true),
        (13, 576, 11, false),
        (16, 1024, 2, true),
        (9, 96, 1, false),
        (16, 576, 7, false),
    ] {
        let w = q8_matrix(&mut r, rows, cols, extreme);
        let cw = CpuQ8::new(&w);
        for row in 0..rows {
            for c in 0..cols {
                assert_eq!(cw.at(row, c), (w.q[row * cols + c], w.d[row * (cols / 32) + c / 32]));
            }
            assert_eq!(cw.exp(row), w.e[row]);
        }
        let x = act(&mut r, tokens, cols, extreme);
        check_q8(&w, &x, 10);
    }
}

/// The largest block terms of both signs in every lane: q = ±127 with a = 4096 (a row of
/// ±127·2^20 quantises to that), nibbles 0 or 15, d and m ±8191 (Q4), w = −128 with
/// d = ±2047 (Q8), output shifts that saturate both ways.
#[test]
fn kernels_at_the_extremes() {
    let cols = 1536;
    let big = 127 << 20;
    let z: Vec<i32> = (0..4 * cols)
        .map(|i| [big, -big, big, big][(i / cols + i / 7) % 4])
        .collect();
    let x = quantize(&z, cols, 0);
    assert!(x.q.iter().all(|&q| q.unsigned_abs() == 127) && x.a.iter().all(|&a| a == 4096));
    for (nib, d, m) in [
        (0xFF, 8191, 8191),
        (0x00, -8191, 8191),
        (0xFF, -8191, -8191),
        (0x0F, 8191, -8191),
    ] {
        let w = Q4Matrix {
            rows: 16,
            cols,
            nib: vec![nib; 16 * cols / 2],
            d: vec![d; 16 * 48],
            m: vec![m; 16 * 48],
            e: (0..16).map(|i| [0, 40, -30, 20][i % 4]).collect(),
        };
        for f in [-20, 0, 10] {
            check_q4(&w, &x, f);
        }
    }
    let cols = 1024;
    let z: Vec<i32> = (0..5 * cols)
        .map(|i| if (i / cols + i / 3) % 2 == 0 { big } else { -big })
        .collect();
    let x = quantize(&z, cols, 0);
    assert!(x.q.iter().all(|&q| q.unsigned_abs() == 127) && x.a.iter().all(|&a| a == 4096));
    for d in [2047, -2047] {
        let w = Q8Matrix {
            rows: 16,
            cols,
            q: vec![-128; 16 * cols],
            d: vec![d; 16 * 32],
            e: (0..16).map(|i| [0, 40, -30, 20][i % 4]).collect(),
        };
        for f in [-20, 0, 10] {
            check_q8(&w, &x, f);
        }
    }
}

/// Attention loops: every implementation that runs here equals the portable one, on
/// random and extreme keys, values and probabilities, long and short contexts.
#[test]
fn head_loops_agree() {
    let mut r = Rng(23);
    let (kvd, n_kv) = (192, 3);
    for (n, extreme) in [
        (1, false),
        (3, true),
        (37, false),
        (45, true),
        (64, true),
        (2049, false),
    ] {
        let k: Vec<i16> = (0..n * kvd)
            .map(|i| {
                if extreme {
                    [511, -511][i % 2]
                } else {
                    (r.below(1023) as i32 - 511) as i16
                }
            })
            .collect();
        let k_exp: Vec<i32> = (0..n * n_kv)
            .map(|i| if extreme { (i % 30) as i32 } else { r.below(22) as i32 })
            .collect();
        let v: Vec<i16> = (0..n * kvd)
            .map(|i| {
                if extreme {
                    [i16::MAX, i16::MIN][i % 2]
                } else {
                    r.next_u64() as i16
                }
            })
            .collect();
        let qi: Vec<i16> = (0..64)
            .map(|i| {
                if extreme {
                    [511, -511, 511][i % 3]
                } else {
                    (r.below(1023) as i32 - 511) as i16
                }
            })
            .collect();
        for kvh in 0..n_kv {
            for shift0 in [12, 0, -9, -40] {
                let mut want = vec![0; n];
                let wmax = head_scores(Isa::Portable, &qi, &k, &k_exp, kvd, n_kv, kvh, shift0, &mut want);
                for isa in Isa::available() {
                    let mut got = vec![0; n];
                    assert_eq!(
                        head_scores(isa, &qi, &k, &k_exp, kvd, n_kv, kvh, shift0, &mut got),
                        wmax,
                        "{isa:?}"
                    );
                    assert_eq!(got, want, "{isa:?} n {n} shift {shift0}");
                }
            }
            // Probabilities as attention makes them: one 2^15, the rest ≤ 2^15 (many 0).
            let mut p: Vec<u32> = (0..n)
                .map(|_| {
                    if extreme {
                        1 << 15
                    } else {
                        [0, 1, r.below(1 << 15) as u32, 1 << 15][r.below(4) as usize]
                    }
                })
                .collect();
            p[n / 2] = 1 << 15;
            let sum = p.iter().sum::<u32>();
            // The probabilities of these scores, every implementation against the portable one.
            let table = crate::tables::exp2_table(8, 15);
            for shift0 in [12, 4, -9] {
                let mut sc = vec![0; n];
                let tmax = head_scores(Isa::Portable, &qi, &k, &k_exp, kvd, n_kv, kvh, shift0, &mut sc);
                let mut pw = vec![0; n];
                let sw = head_probs(Isa::Portable, &sc, tmax, &table, &mut pw);
                for isa in Isa::available() {
                    let mut pg = vec![9; n];
                    assert_eq!(head_probs(isa, &sc, tmax, &table, &mut pg), sw, "{isa:?}");
                    assert_eq!(pg, pw, "{isa:?} n {n}");
                }
            }
            // They add to `out`: start from something other than zeros.
            let start: Vec<i32> = (0..64).map(|i| i * 7 - 200).collect();
            let mut want = start.clone();
            head_values(Isa::Portable, &p, &v, kvd, kvh * 64, sum, &mut want);
            for isa in Isa::available() {
                let mut got = start.clone();
                head_values(isa, &p, &v, kvd, kvh * 64, sum, &mut got);
                assert_eq!(got, want, "{isa:?} n {n}");
            }
        }
    }
}

// Random shapes and values (native only: proptest does not build for wasm32).
#[cfg(not(target_arch = "wasm32"))]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn q4_any_shape(seed in any::<u64>(), rows in 1usize..40, nb in 1usize..49, tokens in 1usize..20, extreme in any::<bool>(), frac in -8i32..16) {
            let mut r = Rng(seed);
            let w = q4_matrix(&mut r, rows, nb * 32, extreme);
            let x = act(&mut r, tokens, nb * 32, extreme);
            check_q4(&w, &x, frac);
        }

        #[test]
        fn q8_any_shape(seed in any::<u64>(), rows in 1usize..40, nb in 1usize..33, tokens in 1usize..20, extreme in any::<bool>(), frac in -8i32..16) {
            let mut r = Rng(seed);
            let w = q8_matrix(&mut r, rows, nb * 32, extreme);
            let x = act(&mut r, tokens, nb * 32, extreme);
            check_q8(&w, &x, frac);
        }
    }
}
