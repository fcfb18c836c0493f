//! Threads: how many the engine's parallel loops run on, from how many rows a row-wise step
//! is worth a fork, and the loops themselves: on rayon's threads with the `parallel` feature,
//! else the same loop in order (the results do not depend on the order: every item writes its
//! own outputs). The row-wise steps that go parallel only from [`PAR_ROWS`] rows
//! (`quantize`, `rmsnorm`, `silu_mul`) keep their rayon branch where they are: without the
//! feature they have nothing to pair it with.

#[cfg(feature = "parallel")]
use rayon::prelude::*;

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

/// `f(item)` for every item.
pub(super) fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    #[cfg(feature = "parallel")]
    items.into_par_iter().for_each(f);
    #[cfg(not(feature = "parallel"))]
    items.into_iter().for_each(f);
}

/// `f(scratch, item)` for every item, `scratch` made by `init` as rayon needs one (once per
/// job it cuts the work into: `for_each_init`), once without the feature.
pub(super) fn for_each_init<T: Send, S>(
    items: Vec<T>,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, T) + Sync + Send,
) {
    #[cfg(feature = "parallel")]
    items.into_par_iter().for_each_init(init, f);
    #[cfg(not(feature = "parallel"))]
    {
        let mut scratch = init();
        items.into_iter().for_each(|t| f(&mut scratch, t));
    }
}

/// `f(item)` for every item, in place.
pub(super) fn for_each_mut<T: Send>(items: &mut [T], f: impl Fn(&mut T) + Sync + Send) {
    #[cfg(feature = "parallel")]
    items.par_iter_mut().for_each(f);
    #[cfg(not(feature = "parallel"))]
    items.iter_mut().for_each(f);
}

/// `f(o, x)` for the chunks of `width` elements of `out` and `input` in pairs (as
/// `out.chunks_mut(width).zip(input.chunks(width))`).
pub(super) fn for_each_chunk<A: Send, B: Sync>(
    out: &mut [A],
    input: &[B],
    width: usize,
    f: impl Fn(&mut [A], &[B]) + Sync + Send,
) {
    #[cfg(feature = "parallel")]
    out.par_chunks_mut(width)
        .zip(input.par_chunks(width))
        .for_each(|(o, x)| f(o, x));
    #[cfg(not(feature = "parallel"))]
    out.chunks_mut(width)
        .zip(input.chunks(width))
        .for_each(|(o, x)| f(o, x));
}
