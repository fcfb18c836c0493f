//! A hardened reader for GGUF v2/v3 files (the model's source format, ggml `docs/gguf.md`).
//!
//! Reads from a byte slice; no file system, so it builds for wasm too. Every count and length
//! is checked against the bytes that remain before anything is allocated, every tensor's data
//! range is bounds-checked, and nothing panics on malformed input.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml tensor types this reader knows the byte size of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block)
    pub fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (the row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte range of the tensor's data in the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    bytes: &'a [u8],
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Gguf(msg.into()))
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return err(format!(
                "truncated: need {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// A count that claims `per_item` bytes each: refuse it if the rest of the file cannot hold it.
    fn count(&mut self, per_item: usize, what: &str) -> Result<usize> {
        let n = self.u64()?;
        let fits = (self.remaining() / per_item.max(1)) as u64;
        if n > fits {
            return err(format!(
                "{what} count {n} cannot fit in the {} bytes left",
                self.remaining()
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.count(1, "string length")?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| Error::Gguf(format!("string at offset {} is not UTF-8", self.pos - n)))
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => match self.arr::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return err(format!("bool value {b} is neither 0 nor 1")),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return err("arrays nested deeper than 2 levels");
                }
                let ety = self.u32()?;
                let n = self.count(1, "array")?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            t => return err(format!("unknown metadata value type {t}")),
        })
    }
}

impl<'a> Gguf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut c = Cursor { b: bytes, pos: 0 };
        if c.take(4)? != MAGIC {
            return err("not a GGUF file (bad magic)");
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return err(format!(
                "unsupported GGUF version {version} (this reader knows 2 and 3)"
            ));
        }
        // A tensor info is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = c.count(24, "tensor")?;
        // A metadata pair is at least 8 (key len) + 4 (type) + 1 bytes.
        let n_kv = c.count(13, "metadata")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return err(format!("duplicate metadata key {key:?}"));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 16)
                .ok_or_else(|| Error::Gguf("bad general.alignment".into()))?,
            None => DEFAULT_ALIGNMENT,
        };
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return err(format!("tensor {name:?} has {n_dims} dimensions"));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64()?);
            }
            let ty_raw = c.u32()?;
            let ty = GgmlType::from_u32(ty_raw)
                .ok_or_else(|| Error::Gguf(format!("tensor {name:?} has unsupported type {ty_raw}")))?;
            let offset = c.u64()?;
            raw.push((name, dims, ty, offset));
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, offset) in raw {
            let (per_block, block_bytes) = ty.block();
            let n = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| Error::Gguf(format!("tensor {name:?} element count overflows")))?;
            if dims[0] % per_block != 0 {
                return err(format!(
                    "tensor {name:?}: row length {} is not a multiple of the block size {per_block}",
                    dims[0]
                ));
            }
            let len = (n / per_block)
                .checked_mul(block_bytes)
                .ok_or_else(|| Error::Gguf(format!("tensor {name:?} size overflows")))?;
            let start = data_start
                .checked_add(offset)
                .ok_or_else(|| Error::Gguf(format!("tensor {name:?} offset overflows")))?;
            let end = start.checked_add(len).filter(|&e| e <= bytes.len() as u64);
            if end.is_none() {
                return err(format!(
                    "tensor {name:?} data [{start}, +{len}) lies outside the file ({} bytes)",
                    bytes.len()
                ));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                start: start as usize,
                len: len as usize,
            });
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::Gguf(format!("missing metadata key {key:?}")))
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key)?
            .as_u64()
            .ok_or_else(|| Error::Gguf(format!("metadata {key:?} is not an unsigned integer")))
    }
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get(key)?
            .as_f32()
            .ok_or_else(|| Error::Gguf(format!("metadata {key:?} is not a float")))
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::Str(s) => Ok(s),
            _ => err(format!("metadata {key:?} is not a string")),
        }
    }
    pub fn get_str_array(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key)? {
            Value::Array(v) => v
                .iter()
                .map(|x| match x {
                    Value::Str(s) => Ok(s.clone()),
                    _ => err(format!("metadata {key:?} holds a non-string")),
                })
                .collect(),
            _ => err(format!("metadata {key:?} is not an array")),
        }
    }
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        match self.get(key)? {
            Value::Array(v) => v
                .iter()
                .map(|x| match *x {
                    Value::I32(i) => Ok(i),
                    _ => err(format!("metadata {key:?} holds a non-i32")),
                })
                .collect(),
            _ => err(format!("metadata {key:?} is not an array")),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<(&TensorInfo, &'a [u8])> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Gguf(format!("missing tensor {name:?}")))?;
        // In bounds: checked in `parse`.
        Ok((t, &self.bytes[t.start..t.start + t.len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a small GGUF in memory.
    pub fn build(kv: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32, Vec<u8>)]) -> Vec<u8> {
        let kv: Vec<_> = kv.iter().map(|(k, t, v)| (k.to_string(), *t, v.clone())).collect();
        let tensors: Vec<_> = tensors
            .iter()
            .map(|(n, d, t, v)| (n.to_string(), d.to_vec(), *t, v.clone()))
            .collect();
        crate::tiny::gguf_bytes(&kv, &tensors)
    }

    pub fn str_val(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn parses_metadata_and_tensors() {
        let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = build(
            &[("a.name", 8, str_val("hi")), ("a.n", 4, 7u32.to_le_bytes().to_vec())],
            &[("t", &[4], 0, f32s.clone())],
        );
        let g = Gguf::parse(&b).unwrap();
        assert_eq!(g.get_str("a.name").unwrap(), "hi");
        assert_eq!(g.get_u64("a.n").unwrap(), 7);
        let (t, data) = g.tensor("t").unwrap();
        assert_eq!(t.ty, GgmlType::F32);
        assert_eq!(data, &f32s[..]);
        assert!(g.tensor("nope").is_err());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let f32s: Vec<u8> = [1.0f32; 8].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = build(&[("k", 8, str_val("value"))], &[("t", &[8], 0, f32s)]);
        for n in 0..b.len() {
            assert!(Gguf::parse(&b[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn absurd_counts_are_refused_without_allocating() {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let e = Gguf::parse(&b).unwrap_err().to_string();
        assert!(e.contains("cannot fit"), "{e}");
        // A string claiming 2^60 bytes.
        let b = build(&[("k", 8, (1u64 << 60).to_le_bytes().to_vec())], &[]);
        assert!(Gguf::parse(&b).is_err());
    }

    #[test]
    fn tensor_outside_file_is_refused() {
        let b = build(&[], &[("t", &[1 << 20], 0, vec![0; 16])]);
        let e = Gguf::parse(&b).unwrap_err().to_string();
        assert!(e.contains("outside the file"), "{e}");
    }
}
