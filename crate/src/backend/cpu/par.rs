//! Threads: how many the engine's parallel loops run on, and from how many rows a row-wise
//! step is worth a fork.

/// Threads the engine's parallel loops run on: rayon's (the current pool's, else the global
/// one's; in the threaded wasm build, the Web Workers of `initThreadPool`), 1 without the
/// `parallel` feature.
pub fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "parallel"))]
    1
}

/// Rows from which the row-wise steps (quantisation, norms, SiLU) of a batch go in parallel:
/// below it (decoding) a fork costs more than the rows.
#[allow(dead_code)] // without the `parallel` feature
pub(super) const PAR_ROWS: usize = 8;
