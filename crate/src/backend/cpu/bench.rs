//! Speed measurements of the CPU engine that run the same code natively and on wasm32 in
//! Node (`wasm-bindgen-test-runner`), so the two can be compared in one run on one machine.
//! Ignored tests: they time, they assert nothing about speed. `scripts/wasm-bench.sh` runs
//! them both ways; the numbers are in BENCHMARKS.md.
//!
//! - `bench_kernels`: matmul GMAC/s (SmolLM2 shapes) and attention of one row over 1,024
//!   positions, one thread, for every [`Isa`] that runs here.
//! - `bench_forward`: the real model (the pack in `~/.cache/lmz`) over the first 1,000 bytes
//!   of `samples/alice-chapter1.txt` as one sequence (260 tokens, every table made), tokens
//!   per second of wall time and of CPU time (1 and 2 threads natively, 1 in wasm), and a
//!   hash of the tables, which must be the same natively and in wasm.
//! - `bench_matmul_threads` (native): one layer's gate and up matmuls on 1 and 2 threads.
//!
//! CPU time (the thread's CPU clock natively, `process.cpuUsage()` in Node) is what the shared
//! development machines let one compare: wall time moves 2× with other jobs' load.

use super::{
    attention_tile_with, matmul_q4_with, matmul_q8_with, quantize, AttnScratch, CpuBackend, CpuQ4, CpuQ8, Isa, KvCache,
    ROW_TILE,
};
use crate::pack::{Config, Model, Q4Matrix, Q8Matrix};
use crate::tiny::Rng;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[cfg(target_arch = "wasm32")]
mod host {
    use wasm_bindgen::prelude::*;

    // Node or a browser (the relaxed-SIMD build's tests run in Chromium): Node's modules are
    // reached through `process.getBuiltinModule` (Node ≥ 20.16), so the module imports
    // nothing a browser cannot resolve.
    #[wasm_bindgen(inline_js = "
        const node = () => (typeof process !== 'undefined' && process.getBuiltinModule) ? process : null;
        export function seconds() { return performance.now() / 1e3; }
        export function place() { return node() ? 'wasm32 (Node)' : 'wasm32 (browser)'; }
        export function cpu_seconds() {
            const p = node();
            if (!p) return performance.now() / 1e3;
            const u = p.cpuUsage();
            return (u.user + u.system) / 1e6;
        }
        export function pack() {
            const p = node();
            if (!p) throw new Error('the model pack is read from ~/.cache/lmz in Node only');
            const home = p.getBuiltinModule('os').homedir();
            return p.getBuiltinModule('fs').readFileSync(home + '/.cache/lmz/smollm2-135m.lmz.safetensors');
        }
    ")]
    extern "C" {
        /// Wall-clock seconds (`performance.now()`).
        pub fn seconds() -> f64;
        /// Where this runs: "wasm32 (Node)" or "wasm32 (browser)".
        pub fn place() -> String;
        /// CPU time of the Node process (µs in `process.cpuUsage()`; it includes V8's compiler
        /// and GC threads, so it overstates the wasm's own time a little); wall time in a browser.
        pub fn cpu_seconds() -> f64;
        /// The model pack from `~/.cache/lmz` (Node only).
        pub fn pack() -> Vec<u8>;
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub fn seconds() -> f64 {
        use std::sync::OnceLock;
        static T0: OnceLock<std::time::Instant> = OnceLock::new();
        T0.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
    }
    /// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`, exact at every read).
    #[cfg(unix)]
    pub fn cpu_seconds() -> f64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec to write; the clock id is a constant every Unix has.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }
    #[cfg(not(unix))]
    pub fn cpu_seconds() -> f64 {
        seconds()
    }
    pub fn pack() -> Vec<u8> {
        let home = std::env::var("HOME").unwrap_or_default();
        std::fs::read(format!("{home}/.cache/lmz/smollm2-135m.lmz.safetensors"))
            .expect("the model pack (lmz model fetch)")
    }
    pub fn place() -> String {
        "native".into()
    }
}

macro_rules! say {
    ($($t:tt)*) => {{
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($t)*);
        #[cfg(not(target_arch = "wasm32"))]
        println!($($t)*);
    }};
}

/// Best of `n` runs of `f`, in the calling thread's CPU time (the machines here are shared,
/// and CPU time is what another job's load changes least).
fn best(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = host::cpu_seconds();
            f();
            host::cpu_seconds() - t
        })
        .fold(f64::INFINITY, f64::min)
}

/// One thread natively (a one-thread rayon pool); wasm has one anyway.
fn one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(all(feature = "parallel", not(target_arch = "wasm32")))]
    let f = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool")
            .install(f)
    };
    f()
}

/// A Q4 matrix of random nibbles and block scales (the kernels' speed does not depend on them).
fn random_q4(r: &mut Rng, rows: usize, cols: usize) -> Q4Matrix {
    let nb = cols / 32;
    Q4Matrix {
        rows,
        cols,
        nib: (0..rows * cols / 2).map(|_| r.below(256) as u8).collect(),
        d: (0..rows * nb).map(|_| r.below(8000) as i16 - 4000).collect(),
        m: (0..rows * nb).map(|_| r.below(8000) as i16 - 4000).collect(),
        e: vec![20; rows],
    }
}

#[test]
#[ignore = "benchmark: scripts/wasm-bench.sh"]
fn bench_kernels() {
    let mut r = Rng(1);
    let (rows, cols) = (1536, 576);
    let nb = cols / 32;
    let w = random_q4(&mut r, rows, cols);
    let w8 = Q8Matrix {
        rows: 8192,
        cols,
        q: (0..8192 * cols).map(|_| r.next_u64() as i8).collect(),
        d: (0..8192 * nb).map(|_| r.below(4000) as i16 - 2000).collect(),
        e: vec![20; 8192],
    };
    let (w, w8) = (CpuQ4::new(&w), CpuQ8::new(&w8));
    say!(
        "{}: matmul GMAC/s, 1 thread, best of 5 in CPU time (Q4 {rows}x{cols}, Q8 8192x{cols})",
        host::place()
    );
    for tokens in [1, 2, 4, 16, 40, 64, 256] {
        let z: Vec<i32> = (0..tokens * cols).map(|_| (r.next_u64() as i32) >> 12).collect();
        let x = quantize(&z, cols, 10);
        let reps = (256 / tokens).max(1);
        let macs = (reps * tokens * cols) as f64;
        for isa in Isa::available() {
            let s4 = one_thread(|| {
                best(5, || {
                    (0..reps).for_each(|_| drop(std::hint::black_box(matmul_q4_with(isa, &w, &x, 10))))
                })
            });
            let s8 = one_thread(|| {
                best(5, || {
                    (0..reps).for_each(|_| drop(std::hint::black_box(matmul_q8_with(isa, &w8, &x, 10))))
                })
            });
            say!(
                "tokens {tokens:4} {:>9}: q4 {:6.2}  q8 {:6.2}",
                format!("{isa:?}"),
                macs * rows as f64 / s4 / 1e9,
                macs * 8192.0 / s8 / 1e9
            );
        }
    }
    // One query row (9 heads) over n cached positions of one layer: 2·9·64·n MACs.
    let cfg = Config {
        name: String::new(),
        n_layers: 1,
        dim: 576,
        hidden: 1536,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        vocab: 2,
        ctx: 8192,
        rope_base: 1e5,
        bos: 0,
        eos: 0,
        doc_start: 0,
        norm_eps_q24: 0,
    };
    let exp = crate::tables::exp2_table(8, 15);
    let n = 1024;
    let cache = KvCache {
        k: (0..n * 192).map(|_| (r.below(1023) as i32 - 511) as i16).collect(),
        k_exp: (0..n * 3).map(|_| r.below(8) as i32).collect(),
        v: (0..n * 192).map(|_| (r.next_u64() as i16) >> 4).collect(),
    };
    let q: Vec<i32> = (0..576 * ROW_TILE).map(|_| (r.next_u64() as i32) >> 16).collect();
    say!(
        "{}: attention over {n} positions, 1 thread, best of 5 in CPU time (µs per row of 9 heads)",
        host::place()
    );
    for isa in Isa::available() {
        let mut s = AttnScratch::default();
        let mut out = vec![0; 576 * ROW_TILE];
        // A decoded token: tiles of (row, `split` heads); a prefill batch: ROW_TILE rows, every head.
        for (what, rows, split) in [
            ("1 row, tiles of 1 head", 1, 1),
            ("1 row, tiles of 3 heads", 1, 3),
            ("4 rows, 9 heads", ROW_TILE, 9),
        ] {
            let pos: Vec<u32> = (0..rows).map(|i| (n - rows + i) as u32).collect();
            let secs = one_thread(|| {
                best(5, || {
                    for _ in 0..16 {
                        for h in (0..9).step_by(split) {
                            let w = if rows == 1 { split * 64 } else { 576 * rows };
                            let lo = if rows == 1 { h * 64 } else { 0 };
                            attention_tile_with(
                                isa,
                                &q[lo..lo + w],
                                h..h + split,
                                &pos,
                                &cache,
                                0,
                                &cfg,
                                &exp,
                                &mut out[..w],
                                &mut s,
                            );
                        }
                    }
                })
            });
            say!(
                "{:>9} {what:24}: {:6.2} GMAC/s ({:.1} µs per row)",
                format!("{isa:?}"),
                (16 * rows * 2 * 9 * 64 * n) as f64 / secs / 1e9,
                secs / (16 * rows) as f64 * 1e6
            );
        }
    }
}

#[test]
#[ignore = "benchmark: scripts/wasm-bench.sh (needs the model pack)"]
fn bench_forward() {
    let t0 = host::seconds();
    let model = Model::from_pack_bytes(&host::pack()).expect("the model pack");
    let text = &include_bytes!("../../../../samples/alice-chapter1.txt")[..1000];
    let tokens = crate::tokenizer::Tokenizer::new(&model.tokenizer)
        .expect("tokenizer")
        .encode(text);
    let cfg = model.config().clone();
    let fr = crate::model::Fracs::new(&model.weights);
    let mut b = CpuBackend::new(&model, tokens.len()).expect("engine");
    drop(model);
    say!(
        "{}: model loaded and laid out in {:.1} s; {} tokens, best isa {:?}",
        host::place(),
        host::seconds() - t0,
        tokens.len(),
        Isa::best()
    );
    let threads: &[usize] = if cfg!(all(feature = "parallel", not(target_arch = "wasm32"))) {
        &[1, 2]
    } else {
        &[1]
    };
    for &n in threads {
        #[allow(unused_mut)]
        let mut run = || {
            let mut h = 0u64;
            let (t, c) = (host::seconds(), host::cpu_seconds());
            crate::model::forward_seq(&mut b, &cfg, &fr, &tokens, 0, 0, &mut |_, f| {
                h = f
                    .iter()
                    .fold(h, |h, &x| h.wrapping_mul(0x100000001b3).wrapping_add(x as u64));
                Ok(())
            })
            .expect("forward");
            (host::seconds() - t, host::cpu_seconds() - c, h)
        };
        #[cfg(all(feature = "parallel", not(target_arch = "wasm32")))]
        let (s, c, h) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("a pool")
            .install(run);
        #[cfg(not(all(feature = "parallel", not(target_arch = "wasm32"))))]
        let (s, c, h) = run();
        let k = tokens.len() as f64;
        // CPU time of the one thread doing the work; with 2 threads, wall time only.
        let cpu = if n == 1 {
            format!(", CPU {c:.2} s = {:.1} tokens per CPU-second", k / c)
        } else {
            String::new()
        };
        say!(
            "{}: {n} thread(s): {} tokens, wall {s:.2} s = {:.1} tokens/s{cpu} (tables hash {h:016x})",
            host::place(),
            tokens.len(),
            k / s
        );
    }
}

/// The gate and up projections of a layer (two Q4 1536×576 matrices, one `matmuls` call as
/// the forward pass makes it) at 1–40 tokens on 1 and 2 threads, in wall time: how well the
/// matmul alone shares out among threads, against which the forward pass's own rate is read
/// (BENCHMARKS.md, "Many small texts in one call").
#[test]
#[ignore = "benchmark: cargo test --release -p lmz --lib bench_matmul_threads -- --ignored --nocapture"]
#[cfg(all(feature = "parallel", not(target_arch = "wasm32")))]
fn bench_matmul_threads() {
    let mut r = Rng(1);
    let (rows, cols) = (1536, 576);
    let w = random_q4(&mut r, rows, cols);
    let w = CpuQ4::new(&w);
    for tokens in [1, 4, 16, 40] {
        let z: Vec<i32> = (0..tokens * cols).map(|_| (r.next_u64() as i32) >> 12).collect();
        let x = quantize(&z, cols, 10);
        let reps = 2000 / tokens;
        for th in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().expect("a pool");
            let s = pool.install(|| {
                let mut b = f64::INFINITY;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        std::hint::black_box(super::matmuls_q4_with(Isa::best(), [(&w, 10), (&w, 10)], &x));
                    }
                    b = b.min(t.elapsed().as_secs_f64());
                }
                b
            });
            println!(
                "tokens {tokens:3} threads {th}: {:.1} GMAC/s wall, {:.1} µs per call",
                (reps * tokens * cols * rows * 2) as f64 / s / 1e9,
                s / reps as f64 * 1e6
            );
        }
    }
}
