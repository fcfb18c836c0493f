//! The kernels (each the twin of the cpu function of the same name), one module per family.

mod attention;
mod elementwise;
mod freq;
pub(super) mod matmul;
