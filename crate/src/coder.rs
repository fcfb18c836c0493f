//! The range coder: integer frequency tables in, bytes out, and back.
//!
//! The coder only ever sees integer tables from [`crate::freq::freq_table`]: every symbol has
//! a frequency ≥ 1 and the table sums to exactly `2^24` ([`FREQ_BITS`]). It runs on the CPU
//! (native or wasm), never on a GPU, so it uses `u64` freely; every operation is an integer
//! add, multiply, divide or shift whose result is fixed by the language, so every platform
//! produces and reads the same bytes.
//!
//! # Design (LZMA's carry-propagating range coder, widened)
//! - `low` is a 56-bit window onto the code value, plus one carry bit (bit 56); `range` is
//!   kept in `[2^48, 2^56)` after every symbol by shifting out whole bytes. A symbol with
//!   cumulative frequency `c` and frequency `f` maps `r = range >> 24` (≥ 2^24 significant
//!   bits) to `low += r·c`, `range = r·f`. Rounding `range` down to a multiple of `2^24` loses
//!   less than `2^24 / 2^48 = 2^-24` of the interval per symbol: ~10^-7 bits, so the output is
//!   the ideal code length `Σ −log2(f/2^24)` plus the termination (≤ 2 bytes).
//! - A carry out of `low` is resolved with LZMA's cache byte and a count of pending `0xFF`
//!   bytes, so `low` never needs more than 57 bits (`r·c < 2^56`, `low < 2^56` after a shift).
//! - The first byte LZMA emits is always 0 (the code value is < 1); it is not written.
//! - Termination: the encoder picks, inside the final interval, the value with the most
//!   trailing zero bits, writes it, and drops every trailing zero byte of the stream. The
//!   decoder reads zeros past the end of its input, so nothing else is needed: 1–2 bytes of
//!   termination instead of LZMA's 5. (At most [`MAX_TRIM`] zeros are dropped, so a decoder
//!   that reads further past the end knows the stream was cut short.)
//!
//! # The decoder on hostile input
//! It never panics and never loops without consuming: `code < range` is checked at every
//! symbol (a target outside the table is [`Error::FormatCorrupt`]); reads past the end give
//! zeros, and more than [`MAX_TRIM`] of them are an error; [`Decoder::finish`] rejects input bytes that the encoder could not have written
//! (the decoder reads exactly as many bytes as the encoder wrote before dropping trailing
//! zeros, so any byte left unread is extra). Anything else decodes to some symbols, which
//! the container's length and checksum then reject.

use crate::error::{Error, Result};
use crate::freq::FREQ_BITS;

/// Bits of `low` below the carry.
const LOW_BITS: u32 = 56;
/// `range` is at least this after normalisation.
const BOT: u64 = 1 << 48;
const TOP: u64 = 1 << LOW_BITS;
const LOW_MASK: u64 = TOP - 1;
/// Bytes the decoder reads before the first symbol.
const INIT_BYTES: usize = (LOW_BITS / 8) as usize;
/// The encoder drops at most this many trailing zero bytes, so a decoder that reads further
/// past the end of its input is reading a stream that has ended early.
pub const MAX_TRIM: usize = 16;

/// `(cumulative frequency, frequency)` of `symbol` in `table`; `None` if it is outside.
pub fn cum_freq(table: &[u32], symbol: u32) -> Option<(u32, u32)> {
    let s = symbol as usize;
    let f = *table.get(s)?;
    // Σ table = 2^24, so the partial sum fits u32.
    let c = table[..s].iter().fold(0u32, |a, &x| a.wrapping_add(x));
    Some((c, f))
}

/// Ideal code length of `symbol` under `table`, in bits (reporting only).
pub fn ideal_bits(table: &[u32], symbol: u32) -> f64 {
    crate::freq::bits(table, symbol)
}

// --- encoder ---

pub struct Encoder {
    low: u64,
    range: u64,
    /// The byte waiting for a possible carry.
    cache: u8,
    /// Bytes of `0xFF` after `cache`, also waiting for the carry.
    pending: u64,
    /// Whether the first (always zero) cache byte has been dropped.
    started: bool,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            low: 0,
            range: TOP - 1,
            cache: 0,
            pending: 0,
            started: false,
            out: Vec::new(),
        }
    }

    /// Encodes a symbol given its cumulative frequency and frequency in a table summing to
    /// `2^24` (`freq ≥ 1`, `cum + freq ≤ 2^24`).
    pub fn encode(&mut self, cum: u32, freq: u32) {
        debug_assert!(freq >= 1 && cum as u64 + freq as u64 <= 1 << FREQ_BITS);
        // range < 2^56 → r < 2^32; r·cum < 2^56 and low < 2^56: the sum fits 57 bits.
        let r = self.range >> FREQ_BITS;
        self.low += r * cum as u64;
        self.range = r * freq as u64;
        // r ≥ 2^24 and freq ≥ 1: at most three shifts bring range back to ≥ 2^48.
        while self.range < BOT {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Encodes `symbol` under `table` (`O(symbol)` to find its cumulative frequency).
    pub fn encode_symbol(&mut self, table: &[u32], symbol: u32) -> Result<()> {
        let (c, f) = cum_freq(table, symbol)
            .ok_or_else(|| Error::InvalidArgument(format!("symbol {symbol} outside a table of {}", table.len())))?;
        if f == 0 || c as u64 + f as u64 > 1 << FREQ_BITS {
            return Err(Error::InvalidArgument(format!(
                "symbol {symbol} has frequency {f} at {c}: not a valid table"
            )));
        }
        self.encode(c, f);
        Ok(())
    }

    fn shift_low(&mut self) {
        if self.low & LOW_MASK < 0xFF << (LOW_BITS - 8) || self.low >= TOP {
            let carry = (self.low >> LOW_BITS) as u8; // 0 or 1
            if self.started {
                self.out.push(self.cache.wrapping_add(carry));
            }
            self.started = true;
            for _ in 0..self.pending {
                self.out.push(0xFFu8.wrapping_add(carry));
            }
            self.pending = 0;
            self.cache = ((self.low >> (LOW_BITS - 8)) & 0xFF) as u8;
        } else {
            self.pending += 1;
        }
        self.low = (self.low & (BOT - 1)) << 8;
    }

    /// Bytes written so far (the final size is this plus at most a few bytes).
    pub fn len(&self) -> usize {
        self.out.len() + self.pending as usize + self.started as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Terminates the stream and returns it.
    pub fn finish(mut self) -> Vec<u8> {
        // The value in [low, low + range) with the most trailing zeros. k = 48 always works
        // (range ≥ 2^48); low + range < 2^57 (nested in an interval that started below 2^56
        // after the last shift), so the chosen value has a carry of at most 1.
        let end = self.low + self.range;
        for k in (48..=LOW_BITS + 1).rev() {
            let mask = (1u64 << k) - 1;
            let v = (self.low + mask) & !mask;
            if v < end {
                self.low = v;
                break;
            }
        }
        for _ in 0..=INIT_BYTES {
            self.shift_low();
        }
        let mut trimmed = 0;
        while self.out.last() == Some(&0) && trimmed < MAX_TRIM {
            self.out.pop();
            trimmed += 1;
        }
        self.out
    }
}

// --- decoder ---

pub struct Decoder<'a> {
    input: &'a [u8],
    /// Bytes read so far, counting the zeros read past the end.
    pos: usize,
    range: u64,
    /// Code value minus `low`: always `< range` (checked at every symbol).
    code: u64,
}

impl<'a> Decoder<'a> {
    pub fn new(input: &'a [u8]) -> Decoder<'a> {
        let mut d = Decoder {
            input,
            pos: 0,
            range: TOP - 1,
            code: 0,
        };
        for _ in 0..INIT_BYTES {
            d.code = (d.code << 8) | d.byte() as u64;
        }
        d
    }

    fn byte(&mut self) -> u8 {
        let b = self.input.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The scaled target of the next symbol: the symbol `s` with `cum(s) ≤ t < cum(s)+freq(s)`
    /// comes next. An error if the input cannot have come from the encoder.
    pub fn target(&self) -> Result<u32> {
        let r = self.range >> FREQ_BITS;
        let t = self.code / r;
        if t >= 1 << FREQ_BITS {
            return Err(Error::FormatCorrupt("range-coded data is not a valid stream".into()));
        }
        Ok(t as u32)
    }

    /// Removes the symbol `(cum, freq)` that [`Decoder::target`] pointed into.
    pub fn consume(&mut self, cum: u32, freq: u32) -> Result<()> {
        let r = self.range >> FREQ_BITS;
        let lo = r * cum as u64;
        let hi = r * (cum as u64 + freq as u64);
        if freq == 0 || self.code < lo || self.code >= hi {
            return Err(Error::FormatCorrupt("range-coded data is not a valid stream".into()));
        }
        self.code -= lo;
        self.range = r * freq as u64;
        while self.range < BOT {
            // code < range < 2^48 here, so the shifted code stays below 2^56.
            self.range <<= 8;
            self.code = (self.code << 8) | self.byte() as u64;
        }
        if self.pos > self.input.len() + MAX_TRIM {
            return Err(Error::FormatCorrupt("range-coded data ends early".into()));
        }
        Ok(())
    }

    /// Decodes the next symbol under `table` (a linear scan of the cumulative frequencies).
    pub fn decode(&mut self, table: &[u32]) -> Result<u32> {
        let t = self.target()?;
        let mut cum = 0u32;
        for (s, &f) in table.iter().enumerate() {
            // cum ≤ t < 2^24 before the add and f ≤ 2^24 in a valid table; saturate otherwise.
            let next = cum.saturating_add(f);
            if t < next {
                self.consume(cum, f)?;
                return Ok(s as u32);
            }
            cum = next;
        }
        Err(Error::FormatCorrupt(
            "range-coded data points outside the frequency table".into(),
        ))
    }

    /// Checks that the stream ended where the encoder's would have: no input byte left unread.
    pub fn finish(self) -> Result<()> {
        if self.pos < self.input.len() {
            return Err(Error::FormatCorrupt(format!(
                "{} unexpected byte(s) after the end of the range-coded data",
                self.input.len() - self.pos
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freq::{freq_table, FREQ_TOTAL};
    use crate::tables::{exp2_table, OUT_EXP_BITS, OUT_P_FRAC};
    use crate::tiny::Rng;
    use proptest::prelude::*;

    /// A table from random logits: `spread` octaves between the likeliest and the rest.
    fn random_table(r: &mut Rng, vocab: usize, spread: u32) -> Vec<u32> {
        let exp = exp2_table(OUT_EXP_BITS, OUT_P_FRAC);
        let logits: Vec<i32> = (0..vocab)
            .map(|_| (r.below((spread as u64) << 10 | 1)) as i32)
            .collect();
        let mut f = vec![0; vocab];
        freq_table(&logits, &exp, &mut f);
        f
    }

    /// Draws a symbol with probability freq/2^24.
    fn sample(r: &mut Rng, table: &[u32]) -> u32 {
        let t = r.below(FREQ_TOTAL as u64) as u32;
        let mut c = 0;
        for (s, &f) in table.iter().enumerate() {
            c += f;
            if t < c {
                return s as u32;
            }
        }
        unreachable!("tables sum to 2^24")
    }

    fn round_trip(tables: &[Vec<u32>], symbols: &[u32]) -> Vec<u8> {
        let mut e = Encoder::new();
        for (t, &s) in tables.iter().zip(symbols) {
            e.encode_symbol(t, s).unwrap();
        }
        let bytes = e.finish();
        let mut d = Decoder::new(&bytes);
        for (t, &s) in tables.iter().zip(symbols) {
            assert_eq!(d.decode(t).unwrap(), s);
        }
        d.finish().unwrap();
        bytes
    }

    fn ideal(tables: &[Vec<u32>], symbols: &[u32]) -> f64 {
        tables.iter().zip(symbols).map(|(t, &s)| ideal_bits(t, s)).sum()
    }

    #[test]
    fn empty_stream_is_empty() {
        assert!(Encoder::new().finish().is_empty());
        Decoder::new(&[]).finish().unwrap();
    }

    /// Round trip of `symbols`, each under the same `table`; returns the size and the ideal bits.
    fn same_table(table: &[u32], symbols: &[u32]) -> (usize, f64) {
        let mut e = Encoder::new();
        for &s in symbols {
            e.encode_symbol(table, s).unwrap();
        }
        let bytes = e.finish();
        let mut d = Decoder::new(&bytes);
        for &s in symbols {
            assert_eq!(d.decode(table).unwrap(), s);
        }
        d.finish().unwrap();
        (bytes.len(), symbols.iter().map(|&s| ideal_bits(table, s)).sum())
    }

    #[test]
    fn extreme_tables() {
        let v = 49152usize;
        let mut peaked = vec![1u32; v];
        peaked[7] = FREQ_TOTAL - (v as u32 - 1);
        let uniform: Vec<u32> = vec![FREQ_TOTAL / 4096; 4096];
        let two = vec![FREQ_TOTAL - 1, 1];
        let mut r = Rng(1);
        for table in [peaked, uniform, two] {
            let n = table.len() as u32;
            // The likeliest symbol many times, uniformly drawn symbols (mostly 24 bits each
            // in the peaked table), and the least likely symbol alternating with the first.
            let top = table.iter().position(|&f| f > 1 << 20).unwrap_or(0) as u32;
            for syms in [
                vec![top; 3000],
                (0..3000).map(|_| r.below(n as u64) as u32).collect::<Vec<_>>(),
                (0..500).map(|i| if i % 2 == 0 { n - 1 } else { 0 }).collect(),
            ] {
                let (len, bits) = same_table(&table, &syms);
                assert!((len as f64) <= bits / 8.0 * 1.005 + 8.0, "{len} bytes for {bits} bits");
            }
        }
        // The likeliest symbol of the peaked table 100 000 times: 0.0042 bits each, 53 bytes
        // in all. At cumulative frequency 0 every byte is zero, and the encoder drops at most
        // MAX_TRIM of them.
        let mut peaked = vec![1u32; v];
        peaked[0] = FREQ_TOTAL - (v as u32 - 1);
        let (len, bits) = same_table(&peaked, &vec![0; 100_000]);
        assert!(
            len as f64 <= bits / 8.0 + 8.0 - MAX_TRIM as f64,
            "{len} bytes for {bits} bits"
        );
    }

    #[test]
    fn overhead_against_the_ideal_code_length() {
        // A realistic stream: 49,152-symbol tables from logits spread over 4–27 octaves (a
        // language model's range), symbols drawn from the tables themselves. The tables are
        // regenerated from the seed for decoding rather than kept (2000 × 192 KB).
        let vocab = 49152;
        let n = 2000;
        let stream = |seed: u64, f: &mut dyn FnMut(&[u32], Option<u32>) -> u32| {
            let mut r = Rng(seed);
            for i in 0..n {
                let t = random_table(&mut r, vocab, 4 + (i % 24) as u32);
                let s = sample(&mut r, &t);
                assert_eq!(f(&t, Some(s)), s);
            }
        };
        let mut e = Encoder::new();
        let mut bits = 0.0;
        stream(42, &mut |t, s| {
            let s = s.unwrap();
            bits += ideal_bits(t, s);
            e.encode_symbol(t, s).unwrap();
            s
        });
        let bytes = e.finish();
        let mut d = Decoder::new(&bytes);
        stream(42, &mut |t, _| d.decode(t).unwrap());
        d.finish().unwrap();
        let over = bytes.len() as f64 - bits / 8.0;
        eprintln!(
            "{n} symbols: ideal {:.1} bytes, coded {} bytes (+{over:.2} bytes, {:.4} %)",
            bits / 8.0,
            bytes.len(),
            100.0 * over / (bits / 8.0)
        );
        assert!(bytes.len() as f64 <= bits / 8.0 * 1.005 + 8.0);
        // In fact the coder is within a couple of bytes of the ideal.
        assert!(over < 3.0, "{over}");
    }

    #[test]
    fn golden_bytes() {
        // Pins the byte format: a change here breaks every existing .lmz file.
        let tables = vec![vec![1u32 << 22; 4]; 8];
        let bytes = round_trip(&tables, &[0, 1, 2, 3, 3, 2, 1, 0]);
        assert_eq!(bytes, [0x1b, 0xe4]);
        let t = vec![FREQ_TOTAL - 2, 1, 1];
        assert_eq!(
            round_trip(&vec![t.clone(); 3], &[1, 0, 2]),
            [0xff, 0xff, 0xfe, 0xfe, 0xff, 0xfe]
        );
    }

    #[test]
    fn garbage_never_panics_and_trailing_bytes_are_rejected() {
        let mut r = Rng(9);
        let table = random_table(&mut r, 300, 8);
        for len in 0..64 {
            for _ in 0..50 {
                let junk: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
                let mut d = Decoder::new(&junk);
                for _ in 0..200 {
                    if d.decode(&table).is_err() {
                        break;
                    }
                }
                let _ = d.finish();
            }
        }
        // A table that does not sum to 2^24 is an error, not a panic.
        let mut d = Decoder::new(&[0xff; 16]);
        assert!(d.decode(&[1, 1]).is_err());
        // Extra bytes after a complete stream.
        let tables = vec![table.clone(); 10];
        let syms: Vec<u32> = (0..10).collect();
        let mut bytes = round_trip(&tables, &syms);
        bytes.extend_from_slice(&[1; 12]);
        let mut d = Decoder::new(&bytes);
        for t in &tables {
            let _ = d.decode(t);
        }
        assert!(d.finish().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trips_on_random_tables(seed in any::<u64>(), vocab in 2usize..3000, n in 0usize..300, spread in 0u32..30) {
            let mut r = Rng(seed);
            let mut tables = Vec::new();
            let mut syms = Vec::new();
            for _ in 0..n {
                let t = random_table(&mut r, vocab, spread);
                // Half drawn from the table, half uniformly (unlikely symbols too).
                let s = if r.below(2) == 0 { sample(&mut r, &t) } else { r.below(vocab as u64) as u32 };
                syms.push(s);
                tables.push(t);
            }
            let bytes = round_trip(&tables, &syms);
            prop_assert!(bytes.len() as f64 <= ideal(&tables, &syms) / 8.0 * 1.005 + 8.0);
        }
    }
}
