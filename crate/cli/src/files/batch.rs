//! Many small files named at once (`lmz -d notes/*.lmz`, `lmz notes/*.txt`): coded in one
//! call per group (`Codec::decompress_many` / `compress_many`: lock-step decoding, shared
//! batches), each output then written, checked and renamed exactly as [`super::one`] does,
//! and each file's error reported on its own. Large files still go one by one.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use lmz::{Error, Result};

use super::{bar, compress_options, destination, report, Dest, Engine, Output};
use crate::engine::with_engine;
use crate::IoArgs;

/// Files of at most this many bytes are coded together when several are named.
pub const SMALL: u64 = 256 << 10;
/// Most files, and most bytes, in one call.
const GROUP_FILES: usize = 256;
const GROUP_BYTES: u64 = 8 << 20;
/// KV cache windows (~48 MB each) the streams of a group share.
const KV_WINDOWS: usize = 4;

/// Whether `input` is a regular file small enough to go in a group.
pub fn is_small(input: &Path) -> bool {
    input != Path::new("-") && std::fs::metadata(input).is_ok_and(|m| m.is_file() && m.len() <= SMALL)
}

/// Cuts `inputs` (all small) into groups of at most [`GROUP_FILES`] files and
/// [`GROUP_BYTES`] bytes.
pub fn groups<'a>(inputs: &[&'a Path]) -> Vec<Vec<&'a Path>> {
    let mut out: Vec<Vec<&Path>> = Vec::new();
    let mut bytes = 0;
    for &p in inputs {
        let n = std::fs::metadata(p).map_or(0, |m| m.len());
        if out
            .last()
            .is_none_or(|g| g.len() >= GROUP_FILES || bytes + n > GROUP_BYTES)
        {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(g) = out.last_mut() {
            g.push(p);
        }
    }
    out
}

/// A file of a group, read, with where its output goes.
struct Item<'a> {
    input: &'a Path,
    dest: Dest,
    meta: std::fs::Metadata,
    data: Vec<u8>,
}

/// A file's outcome: an error may be the whole group's (the engine's), shared by its files.
pub type Outcome = (PathBuf, std::result::Result<(), Rc<Error>>);

/// Codes one group; returns each file's outcome, in order.
pub fn group(model_flag: Option<&Path>, a: &IoArgs, inputs: &[&Path], engine: &mut Option<Engine>) -> Vec<Outcome> {
    let decompress = a.decompress || a.test;
    let mut outcome: Vec<Outcome> = Vec::new();
    let mut items = Vec::new();
    for &input in inputs {
        match read(a, input, decompress) {
            Ok(it) => items.push(it),
            Err(e) => outcome.push((input.to_path_buf(), Err(Rc::new(e)))),
        }
    }
    if items.is_empty() {
        return outcome;
    }
    let results = match code(model_flag, a, &items, engine, decompress) {
        Ok(r) => r,
        Err(e) => {
            // The engine failed (or was cancelled): every file of the group gets the error.
            let e = Rc::new(e);
            for it in &items {
                outcome.push((it.input.to_path_buf(), Err(e.clone())));
            }
            return outcome;
        }
    };
    let n = items.len();
    let (secs, results) = results;
    for (it, r) in items.into_iter().zip(results) {
        let input = it.input.to_path_buf();
        let r = r.and_then(|bytes| finish(a, engine, it, &bytes, decompress, secs / n as f64));
        outcome.push((input, r.map_err(Rc::new)));
    }
    outcome
}

/// Checks the destination and reads the input.
fn read<'a>(a: &IoArgs, input: &'a Path, decompress: bool) -> Result<Item<'a>> {
    let dest = destination(a, input, false, decompress)?;
    let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
    if !meta.is_file() {
        return Err(Error::InvalidArgument("not a regular file".into()));
    }
    let data = std::fs::read(input).map_err(|e| Error::io(input, e))?;
    Ok(Item {
        input,
        dest,
        meta,
        data,
    })
}

type Coded = (f64, Vec<Result<Vec<u8>>>);

/// Every item compressed or decompressed in one call; the call's wall time.
fn code(
    model_flag: Option<&Path>,
    a: &IoArgs,
    items: &[Item],
    engine: &mut Option<Engine>,
    decompress: bool,
) -> Result<Coded> {
    if engine.is_none() {
        *engine = Some(Engine::load(model_flag)?);
    }
    let eng = engine
        .as_mut()
        .ok_or_else(|| Error::InvalidArgument("no model".into()))?;
    let refs: Vec<&[u8]> = items.iter().map(|it| &it.data[..]).collect();
    let total: u64 = if decompress {
        refs.iter()
            .filter_map(|f| lmz::container::info(f).ok())
            .map(|i| i.original_len)
            .sum()
    } else {
        refs.iter().map(|f| f.len() as u64).sum()
    };
    // The largest window any file was made with (a full-form header may name its own).
    let window = refs
        .iter()
        .filter_map(|f| lmz::container::info(f).ok()?.window_stride)
        .map(|(w, _)| w as usize)
        .fold(eng.codec.default_policy().window, usize::max);
    let what = if decompress { "decompressing" } else { "compressing" };
    let bar = bar(a, total, what);
    bar.set_message(format!("{what} {} files", refs.len()));
    let opts = compress_options(a, &eng.codec);
    let (codec, backend) = eng.backend(a.backend, window, KV_WINDOWS)?;
    let t0 = Instant::now();
    let mut p = |d: u64, _: u64| bar.set_position(d);
    let r = if decompress {
        with_engine!(backend, b => codec.decompress_many(b, &refs, &mut p))?
    } else {
        with_engine!(backend, b => codec.compress_many(b, &refs, &opts, &mut p))?
    };
    bar.finish_and_clear();
    Ok((t0.elapsed().as_secs_f64(), r))
}

/// Writes one item's output as [`super::one`] does: to a temporary file, synced, renamed,
/// read back; then removes the input if asked.
fn finish(a: &IoArgs, engine: &Option<Engine>, it: Item, bytes: &[u8], decompress: bool, secs: f64) -> Result<()> {
    let mut out = Output::open(&it.dest)?;
    out.write(bytes)?;
    let written = out.finish(Some(&it.meta))?;
    if let Dest::File { remove_input: true, .. } = &it.dest {
        std::fs::remove_file(it.input).map_err(|e| Error::io(it.input, e))?;
    }
    if let (true, Some(eng)) = (a.verbose || (a.test && !a.quiet), engine) {
        let read = it.data.len() as u64;
        let (orig, comp) = if decompress { (written, read) } else { (read, written) };
        report(a, it.input, eng, orig, comp, secs);
    }
    Ok(())
}
