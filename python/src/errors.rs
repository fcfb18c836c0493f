//! The library's errors as Python exceptions: `lmz.LmzError` (or its subclass for the code's
//! group, `lmz/_errors.py`) with `.code` = `Error::code()` and the message. The classes are
//! Python classes (so that they pickle, and `except lmz.FormatError` reads as Python); this
//! module only asks `lmz._errors._make(code, message)` for one.

use lmz::Error;
use pyo3::prelude::*;

/// The exception `lmz._errors._make` builds for `code` (falls back to the import error, which
/// only a broken installation gives).
pub fn exception(py: Python<'_>, code: &str, message: &str) -> PyErr {
    match make(py, code, message) {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// The exception object (not raised) for `code`: what `errors="return"` puts in a list.
pub fn make<'py>(py: Python<'py>, code: &str, message: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("lmz._errors")?.getattr("_make")?.call1((code, message))
}

pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    exception(py, e.code(), &message(e))
}

pub fn to_py_object<'py>(py: Python<'py>, e: &Error) -> PyResult<Bound<'py, PyAny>> {
    make(py, e.code(), &message(e))
}

/// The library's message, with the CLI's advice (`--model`, `--backend cpu`, `lmz model
/// fetch`) in Python's words; the code stays.
pub fn message(e: &Error) -> String {
    match e {
        Error::ModelMissing { path } => format!(
            "model pack not found at {path}: run lmz.fetch_model() (or `lmz model fetch`), or pass \
             Compressor(model=PATH) / set LMZ_MODEL"
        ),
        Error::FormatModelMismatch { wanted, have } => format!(
            "model mismatch: the file was made with the model pack whose fingerprint {wanted}, but the \
             loaded pack is {have}; open that pack with Compressor(model=PATH)"
        ),
        Error::GpuNoAdapter(why) => format!(
            "no GPU adapter found ({why}); use backend=\"cpu\" (or \"auto\", which falls back to the \
             CPU), or install a Vulkan driver"
        ),
        Error::GpuLimits { adapter, what } => {
            format!("the GPU adapter {adapter} is too small for this model: {what}; use backend=\"cpu\" or \"auto\"")
        }
        _ => e.to_string(),
    }
}
