//! lmz: lossless compression driven by a small language model, with every number between
//! the weights and the entropy coder computed in integer arithmetic so that a file made on
//! one machine decodes on any other, bit for bit.
//!
//! Data path (ARCHITECTURE.md): bytes → [`tokenizer`] → [`model`] forward pass (integer,
//! generic over a [`backend`]) → [`freq`] integer frequency tables → range coder → container.
//!
//! The library core has no file system, threads (unless the `parallel` feature is on) or
//! clocks, so it builds for `wasm32-unknown-unknown` unchanged.

pub mod adapt;
pub mod backend;
pub mod coder;
pub mod container;
pub mod convert;
pub mod error;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod fetch;
pub mod freq;
pub mod gguf;
pub mod model;
pub mod ngram;
pub mod pack;
#[cfg(feature = "reference")]
pub mod reference;
pub mod shaders;
pub mod tables;
pub mod tiny;
pub mod tokenizer;
pub mod wide;

pub use error::{Error, Result};
pub use pack::Model;
