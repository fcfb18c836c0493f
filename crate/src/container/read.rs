//! Byte reading (hostile input) and parsing.

use crate::error::{Error, Result};
use crate::eval::KvMode;
use crate::pack::hex;

use super::format::{
    ChunkInfo, Form, Info, Method, TagPolicy, COMPACT_FP_BYTES, FLAGS_KNOWN, FLAG_ADAPT, FLAG_KV_SHIFT, FLAG_NGRAM,
    MAGIC, TAG_LAST, TAG_RESERVED, TAG_STORED, VERSION,
};
#[cfg(doc)]
use super::Codec;

fn truncated<T>(what: &str) -> Result<T> {
    Err(Error::FormatTruncated(format!("the data ends inside {what}")))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.b.len() - self.pos < n {
            return truncated(what);
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    /// LEB128, at most 10 bytes, minimal (no redundant trailing zero groups), < 2^64.
    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = (b & 0x7F) as u64;
            if i == 9 && b > 1 {
                return Err(Error::FormatCorrupt(format!("{what} does not fit 64 bits")));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(Error::FormatCorrupt(format!("{what} is not a minimal varint")));
                }
                return Ok(v);
            }
        }
        Err(Error::FormatCorrupt(format!("{what} is longer than 10 bytes")))
    }
    fn rest(&self) -> &'a [u8] {
        &self.b[self.pos..]
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The compact forms' 16-bit check: the low half of crc32(fingerprint ‖ original), so a
/// wrong model is caught too.
pub(super) fn check16(fingerprint: &[u8; 32], data: &[u8]) -> u16 {
    let mut h = crc32fast::Hasher::new();
    h.update(fingerprint);
    h.update(data);
    h.finalize() as u16
}

// --- parsing ---

/// A parsed file: its info and each chunk's payload.
pub(super) struct Parsed<'a> {
    pub(super) info: Info,
    pub(super) payloads: Vec<&'a [u8]>,
}

pub(super) fn parse(file: &[u8]) -> Result<Parsed<'_>> {
    match file.first() {
        None => Err(Error::FormatTruncated(
            "the data is empty (an lmz file has at least a 1-byte tag)".into(),
        )),
        Some(&0x89) => parse_full(file),
        Some(&t) if Method::from_tag(t).is_some() => parse_compact(file),
        Some(&t) if TAG_RESERVED.contains(&t) => Err(Error::FormatVersion {
            version: t as u32,
            supported: format!("full {VERSION}, compact tags 0x{TAG_STORED:02X}–0x{TAG_LAST:02X}"),
        }),
        Some(_) => Err(Error::FormatBadMagic(format!(
            "it starts with {} (an lmz file starts with 89 4C 4D 5A or a byte F8–{TAG_LAST:02X})",
            hex(&file[..file.len().min(4)])
        ))),
    }
}

fn parse_full(file: &[u8]) -> Result<Parsed<'_>> {
    let mut c = Cursor { b: file, pos: 0 };
    let magic = c
        .take(4, "the magic bytes")
        .map_err(|_| Error::FormatBadMagic(format!("only {} byte(s)", file.len())))?;
    if magic != MAGIC {
        return Err(Error::FormatBadMagic(format!(
            "it starts with {} (an lmz file starts with 89 4C 4D 5A)",
            hex(magic)
        )));
    }
    let version = c.u8("the version")?;
    if version != VERSION {
        return Err(Error::FormatVersion {
            version: version as u32,
            supported: VERSION.to_string(),
        });
    }
    let flags = c.u8("the flags")?;
    let fp = c.take(32, "the model fingerprint")?.to_vec();
    let window = c.u32("the policy")?;
    let stride = c.u32("the policy")?;
    let original_len = c.u64("the original length")?;
    let checksum = c.u32("the checksum")?;
    let count = c.u32("the chunk count")? as usize;
    // Every entry takes at least 3 bytes, and the header checksum 4 more.
    if count > c.rest().len().saturating_sub(4) / 3 {
        return truncated(&format!(
            "the chunk table ({count} chunks cannot fit in {} bytes)",
            c.rest().len()
        ));
    }
    let mut chunks = Vec::with_capacity(count);
    let (mut sum_orig, mut sum_stored) = (0u64, 0u64);
    for i in 0..count {
        let what = format!("chunk table entry {i}");
        let m = c.u8(&what)?;
        let original_len = c.varint(&what)?;
        let stored_len = c.varint(&what)?;
        let method =
            Method::from_u8(m).ok_or_else(|| Error::FormatCorrupt(format!("chunk {i} has unknown method {m}")))?;
        sum_orig = sum_orig
            .checked_add(original_len)
            .ok_or_else(|| Error::FormatCorrupt("chunk lengths overflow".into()))?;
        sum_stored = sum_stored
            .checked_add(stored_len)
            .ok_or_else(|| Error::FormatCorrupt("chunk lengths overflow".into()))?;
        chunks.push(ChunkInfo {
            method,
            original_len,
            stored_len,
        });
    }
    let header_end = c.pos;
    let hcrc = c.u32("the header checksum")?;
    if crc32fast::hash(&file[..header_end]) != hcrc {
        return Err(Error::FormatCorrupt(
            "the header checksum does not match: the header is damaged".into(),
        ));
    }
    if flags & !FLAGS_KNOWN != 0 {
        return Err(Error::FormatVersion {
            version: version as u32 * 256 + flags as u32,
            supported: format!("{VERSION} with flags 0–{FLAGS_KNOWN}"),
        });
    }
    let kv = if flags & FLAG_KV_SHIFT != 0 {
        KvMode::Shift
    } else {
        KvMode::Recompute
    };
    let adapt = flags & FLAG_ADAPT != 0;
    let ngram = flags & FLAG_NGRAM != 0;
    if sum_orig != original_len {
        return Err(Error::FormatCorrupt(format!(
            "the chunks add up to {sum_orig} bytes, the header says {original_len}"
        )));
    }
    let rest = c.rest().len() as u64;
    if sum_stored > rest {
        return Err(Error::FormatTruncated(format!(
            "the chunks need {sum_stored} bytes after the header, the data has {rest}"
        )));
    }
    if sum_stored < rest {
        return Err(Error::FormatCorrupt(format!(
            "{} unexpected byte(s) after the last chunk (concatenated files?)",
            rest - sum_stored
        )));
    }
    let mut payloads = Vec::with_capacity(count);
    for ch in &chunks {
        // Σ stored_len = rest: every take succeeds and every length fits usize.
        payloads.push(c.take(ch.stored_len as usize, "a chunk")?);
    }
    let info = Info {
        form: Form::Full,
        version: version as u32,
        fingerprint: fp,
        original_len,
        compressed_len: file.len() as u64,
        checksum,
        window_stride: Some((window, stride)),
        chat: false,
        kv,
        adapt,
        ngram,
        chunks,
    };
    Ok(Parsed { info, payloads })
}

fn parse_compact(file: &[u8]) -> Result<Parsed<'_>> {
    let mut c = Cursor { b: file, pos: 0 };
    let tag = c.u8("the tag")?;
    let fp = c.take(COMPACT_FP_BYTES, "the model fingerprint")?.to_vec();
    let original_len = c.varint("the original length")?;
    let check = c.take(2, "the check")?;
    let checksum = u16::from_le_bytes([check[0], check[1]]) as u32;
    let payload = c.rest();
    let (method, t) = Method::from_tag(tag).ok_or_else(|| Error::FormatCorrupt(format!("tag {tag:02X}")))?;
    let chunks = if original_len == 0 && payload.is_empty() {
        vec![]
    } else {
        vec![ChunkInfo {
            method,
            original_len,
            stored_len: payload.len() as u64,
        }]
    };
    let info = Info {
        form: Form::Compact,
        version: 1,
        fingerprint: fp,
        original_len,
        compressed_len: file.len() as u64,
        checksum,
        window_stride: None,
        kv: t.kv,
        adapt: t.adapt,
        ngram: t.ngram,
        chat: t.chat,
        chunks,
    };
    Ok(Parsed {
        info,
        payloads: vec![payload],
    })
}

/// Reads a file's header: form, version, model fingerprint, sizes, chunks. Needs no model.
pub fn info(file: &[u8]) -> Result<Info> {
    parse(file).map(|p| p.info)
}

/// A raw stream's tag, method, policy, check and payload (docs/FORMAT.md, "Raw stream").
pub(super) fn split_raw(raw: &[u8]) -> Result<(u8, Method, TagPolicy, u16, &[u8])> {
    let (&tag, rest) = raw
        .split_first()
        .ok_or_else(|| Error::FormatTruncated("the raw stream is empty".into()))?;
    let (method, t) = match Method::from_tag(tag) {
        Some(m) => m,
        None if TAG_RESERVED.contains(&tag) => {
            return Err(Error::FormatVersion {
                version: tag as u32,
                supported: format!("raw tags 0x{TAG_STORED:02X}–0x{TAG_LAST:02X}"),
            })
        }
        None => {
            return Err(Error::FormatBadMagic(format!(
                "raw stream tag {tag:02X} (expected F8–{TAG_LAST:02X})"
            )))
        }
    };
    if rest.len() < 2 {
        return truncated("the check");
    }
    Ok((tag, method, t, u16::from_le_bytes([rest[0], rest[1]]), &rest[2..]))
}

/// The raw stream inside a compact file, and its original length: the inverse of
/// [`raw_to_compact`] (the fingerprint's bytes are dropped, not checked; decoding checks
/// them through the check). An `LMZ_FORMAT_*` error for a full-form or broken file.
pub fn compact_to_raw(file: &[u8]) -> Result<(Vec<u8>, u64)> {
    let p = parse(file)?;
    if p.info.form != Form::Compact {
        return Err(Error::FormatCorrupt(
            "a full-form file has no raw stream inside (only the compact form does)".into(),
        ));
    }
    let mut out = Vec::with_capacity(3 + p.payloads[0].len());
    out.push(file[0]);
    out.extend_from_slice(&(p.info.checksum as u16).to_le_bytes());
    out.extend_from_slice(p.payloads[0]);
    Ok((out, p.info.original_len))
}

/// The standalone compact file holding a raw stream of `len` original bytes made with the
/// model pack whose SHA-256 is `fingerprint`: the raw stream with the fingerprint's first
/// bytes and the length put back (both forms carry the same check, over the whole
/// fingerprint and the original). No model runs; the bytes equal what
/// [`Codec::compress`] writes in the compact form when it picks the same method. A wrong
/// `len` or `fingerprint` is not detected here but on decoding (`LMZ_FORMAT_CHECKSUM` or
/// `LMZ_FORMAT_CORRUPT`), as for the raw stream itself.
pub fn raw_to_compact(fingerprint: &[u8; 32], raw: &[u8], len: u64) -> Result<Vec<u8>> {
    let (tag, _, _, check, payload) = split_raw(raw)?;
    let mut out = Vec::with_capacity(raw.len() + COMPACT_FP_BYTES + 10);
    out.push(tag);
    out.extend_from_slice(&fingerprint[..COMPACT_FP_BYTES]);
    put_varint(&mut out, len);
    out.extend_from_slice(&check.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}
