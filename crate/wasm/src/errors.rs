//! The JS errors the bindings raise: the library's `Error`s (`name` = `code` = `Error::code()`)
//! and the bindings' own, with codes of the same shape.

use lmz::Error;
use wasm_bindgen::prelude::*;

/// Codes of errors that the bindings raise themselves (the library's are `Error::code()`).
pub mod codes {
    /// A second call on a `Compressor` while one is running (the package queues calls).
    pub const BUSY: &str = "LMZ_BUSY";
    /// `engine` is not one of "auto", "webgpu", "cpu".
    pub const INVALID_ARGUMENT: &str = "LMZ_INVALID_ARGUMENT";
}

/// A JS `Error` with `name` = `code` = `code`.
pub(crate) fn js_error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name(code);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

pub(crate) fn to_js(e: Error) -> JsValue {
    js_error(e.code(), &e.to_string())
}

/// A GPU error in the browser's words: the library's messages for `LMZ_GPU_NO_ADAPTER` and
/// `LMZ_GPU_LIMITS` give CLI advice (`--backend cpu`, install a Vulkan driver); the code
/// stays, the advice is the package's `engine` option. Other errors pass unchanged.
#[cfg(feature = "gpu")]
pub(crate) fn gpu_to_js(e: Error) -> JsValue {
    let fix = "use engine: 'cpu', or 'auto', which runs on the CPU when WebGPU cannot";
    match &e {
        Error::GpuLimits { adapter, what } => {
            let name = if adapter.is_empty() {
                String::new()
            } else {
                format!(" ({adapter})")
            };
            js_error(
                e.code(),
                &format!("the WebGPU adapter{name} is too small for this model: {what}; {fix}"),
            )
        }
        Error::GpuNoAdapter(why) => js_error(
            e.code(),
            &format!("this browser offers no WebGPU adapter ({why}); {fix}"),
        ),
        _ => to_js(e),
    }
}

pub(crate) fn busy_error() -> JsValue {
    js_error(
        codes::BUSY,
        "this compressor is already running a call; wait for it (the package queues calls)",
    )
}
