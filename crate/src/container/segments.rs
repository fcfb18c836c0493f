//! Segments: compression's input in bounded pieces.

use std::io::Read;

use crate::error::{Error, Result};

use super::Progress;

/// Compression tokenizes and cuts its input one segment of at most this many bytes at a
/// time ([`segment_len`]), so memory never holds more than a segment's bytes and tokens
/// however long the input. Part of what a file looks like (where chunks end), not of the
/// format: any reader decodes any cut. Inputs up to this size are one segment.
pub const SEGMENT_BYTES: usize = 8 << 20;

/// The length of the next segment at the start of `buf`, where `buf` holds at least
/// `max` bytes of the input or (`eof`) all of its rest. The whole rest when it fits in
/// `max`; otherwise a cut after the last line end (`\n`) in the last eighth of the first
/// `max` bytes, or failing that before the last UTF-8 lead byte there, or at `max`. The cut
/// depends only on the first `max` bytes, so reading in any pieces gives the same segments.
pub fn segment_len(buf: &[u8], eof: bool, max: usize) -> usize {
    let max = max.max(8);
    if eof && buf.len() <= max {
        return buf.len();
    }
    let head = &buf[..max.min(buf.len())];
    if head.len() < 8 {
        return head.len();
    }
    let from = head.len() - head.len() / 8;
    if let Some(i) = head[from..].iter().rposition(|&c| c == b'\n') {
        return from + i + 1;
    }
    // Not inside a UTF-8 sequence: before the last byte that is not a continuation byte.
    match head[head.len() - 4..].iter().rposition(|&c| c & 0xC0 != 0x80) {
        Some(i) if head.len() - 4 + i > 0 => head.len() - 4 + i,
        _ => head.len(),
    }
}

/// Compression's input, one segment at a time.
pub(super) trait Segments {
    /// The next segment ([`segment_len`] of what is left) and whether it is the last, or
    /// `None` at the end.
    fn next_segment(&mut self) -> Result<Option<(&[u8], bool)>>;
}

/// An input already in memory.
pub(super) struct SliceSegments<'a> {
    pub(super) rest: &'a [u8],
    pub(super) max: usize,
}

impl Segments for SliceSegments<'_> {
    fn next_segment(&mut self) -> Result<Option<(&[u8], bool)>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (seg, rest) = self.rest.split_at(segment_len(self.rest, true, self.max));
        self.rest = rest;
        Ok(Some((seg, rest.is_empty())))
    }
}

/// An input read as it goes; holds at most one segment (plus what a cut left over).
pub(super) struct ReadSegments<'a> {
    pub(super) input: &'a mut dyn Read,
    pub(super) max: usize,
    pub(super) buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out.
    pub(super) used: usize,
    pub(super) eof: bool,
}

impl Segments for ReadSegments<'_> {
    fn next_segment(&mut self) -> Result<Option<(&[u8], bool)>> {
        self.buf.drain(..self.used);
        self.used = 0;
        let max = self.max.max(8); // as segment_len counts
        if !self.eof && self.buf.len() < max {
            let want = max - self.buf.len();
            // Reads until `want` bytes or the end (read_to_end retries interruptions).
            let got = (&mut *self.input)
                .take(want as u64)
                .read_to_end(&mut self.buf)
                .map_err(|e| Error::io("(input)", e))?;
            self.eof = got < want;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.used = segment_len(&self.buf, self.eof, self.max);
        // The last when the input has ended and nothing is left over (an input of exactly
        // `max` bytes has not seen its end yet: that needs one more read, but such an input
        // is never one chunk, which is all this is asked for).
        let last = self.eof && self.used == self.buf.len();
        Ok(Some((&self.buf[..self.used], last)))
    }
}

/// A segment's progress as the whole input's: `base` bytes came before it.
pub(super) struct Offset<'a> {
    pub(super) inner: &'a mut dyn Progress,
    pub(super) base: u64,
    pub(super) total: u64,
}

impl Progress for Offset<'_> {
    fn update(&mut self, done: u64, _: u64) -> Result<()> {
        // `base` may be lengths a header states (saturated at u64::MAX), not bytes seen.
        let d = self.base.saturating_add(done);
        self.inner.update(d, self.total.max(d))
    }
}
