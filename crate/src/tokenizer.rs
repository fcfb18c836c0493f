//! SmolLM2's tokenizer: GPT-2 style byte-level BPE with llama.cpp's `smollm` pre-tokenizer.
//!
//! bytes → pre-tokens → BPE merges inside each pre-token → token ids, and back.
//!
//! # Where the data comes from
//! The vocabulary (49,152 GPT-2 byte-to-unicode strings such as `"Ġthe"`) and the merge list
//! (48,900 `"left right"` strings, rank = position) are the GGUF's `tokenizer.ggml.*` metadata,
//! carried unchanged into the model pack ([`crate::pack::TokenizerData`]). Nothing here reads a
//! file, spawns a thread or looks at a clock, so it runs the same in the browser.
//!
//! # What "the same as llama.cpp" means
//! On valid UTF-8 the ids are those of llama.cpp's `llama_tokenize(add_special = false,
//! parse_special = false)` for a GGUF whose `tokenizer.ggml.pre` is `smollm`:
//! 1. Pre-tokenize in two passes, each splitting the pieces of the one before:
//!    `\p{N}` (every number character becomes a piece of its own; the text between them stays
//!    one piece), then GPT-2's
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
//!    The regex crate has no look-ahead, so `\s+(?!\S)` is done by hand: a run of two or more
//!    whitespace characters followed by more text in the same piece leaves its last character
//!    to the next pre-token (which is how `"  leading"` becomes `" "`, `" leading"`).
//! 2. Inside each pre-token, start from one symbol per byte and repeatedly merge the adjacent
//!    pair of lowest merge rank, leftmost first among equal ranks.
//!
//! Special tokens (`<|im_start|>`, `<|endoftext|>`, …) are never recognised in the input: input
//! is data, and `"<|im_start|>"` in a file is tokenized like any other text. No BOS is added.
//!
//! `\p{L}`, `\p{N}` and `\s` come from the regex crate's Unicode tables (Unicode 16), llama.cpp's
//! from its own, older ones: the two differ on the 80 number characters new in Unicode 16
//! (Garay, Kirat Rai, … digits), where llama.cpp does not split them off. Checked against
//! llama.cpp (llama-cpp-python 0.3.36) on 6.3 MB of the corpus (Canterbury texts, the enwik8
//! prefix, dickens) and on every code point in a probe string: no other difference.
//!
//! Decompression never tokenizes — it only needs `decode`, which depends on the vocabulary
//! alone — so a change in those tables could change how a later lmz tokenizes, never whether
//! an existing file decodes.
//!
//! # Bytes that are not UTF-8 (lmz's policy; llama.cpp would replace them with U+FFFD)
//! The input is cut into maximal valid UTF-8 runs and the invalid sequences between them
//! ([`<[u8]>::utf8_chunks`]: each invalid piece is a maximal prefix of a UTF-8 sequence, or one
//! byte). Valid runs are pre-tokenized as above, each on its own (no pre-token spans an invalid
//! piece); each invalid piece is one pre-token, BPE-merged like any other.
//!
//! # Bytes that have no token (lmz's policy; llama.cpp drops them)
//! SmolLM2's vocabulary lacks 21 of the 256 byte tokens: the controls 0x04, 0x06, 0x13, 0x14,
//! 0x16, 0x1D and the bytes 0xC0, 0xC1, 0xF1, 0xF2, 0xF5–0xFF (never or almost never in UTF-8).
//! No token spells them and no merge involves them, so BPE runs on the stretches between them,
//! and each such byte `b` is written as two tokens: the *escape* token, then the token of the
//! byte `b ^ 0x80` (which [`Tokenizer::new`] checks has one). The escape token is the
//! vocabulary's last control token (SmolLM2: id 16, `<empty_output>`), which BPE never emits.
//! So `decode` is the concatenation of [`Tokenizer::token_bytes`] except that an escape token
//! followed by such a byte token spells the missing byte; an escape token anywhere else (which
//! `encode` never produces) spells its own text. On valid UTF-8 the ids are llama.cpp's with
//! these pairs inserted where llama.cpp silently loses the byte.
//!
//! # Invariants
//! - `decode(&encode(x)) == x` for every byte string `x`: every pre-token is a slice of the
//!   input, the pre-tokens cover it in order, a merge's token spells exactly its two parts, and
//!   every byte has a token or an escape (both checked in [`Tokenizer::new`]).
//! - `encode` emits only single-byte tokens, merge results and escape pairs.
//! - Every id that `encode` returns is `< vocab_size()`.

use crate::pack::TokenizerData;
use crate::{Error, Result};
use regex::Regex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The first pre-tokenizer pass: one piece per number character.
const DIGIT_PATTERN: &str = r"\p{N}";
/// The second pass: GPT-2's pattern without its `\s+(?!\S)` branch (see the module doc).
const WORD_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

// --- byte-level alphabet ---

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68
/// bytes (controls, space, 0x7F–0xA0, 0xAD) take the characters U+0100, U+0101, … in byte order.
fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        chars[b as usize] = if printable(b) {
            char::from(b)
        } else {
            // U+0100..=U+0143 are all scalar values, so the fallback is unreachable.
            let c = char::from_u32(next).unwrap_or('\u{FFFD}');
            next += 1;
            c
        };
    }
    chars
}

/// The inverse of [`byte_chars`]: the byte a character stands for, if it is one of the 256.
fn char_bytes(chars: &[char; 256]) -> HashMap<char, u8> {
    (0..=255u8).map(|b| (chars[b as usize], b)).collect()
}

// --- tokenizer ---

/// A merge rule, found by the ids of the pair it joins.
#[derive(Debug, Clone, Copy)]
struct Merge {
    /// Position in the GGUF merge list: lower merges first.
    rank: u32,
    /// The token the pair becomes.
    token: u32,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// SmolLM2's tokenizer, built once from the model pack. `encode` and `decode` take `&self`, so
/// one tokenizer serves any number of callers.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Raw bytes of every token, end to end: token `i` is `bytes[ends[i - 1]..ends[i]]`.
    bytes: Vec<u8>,
    /// `[vocab]`: end offset of each token in `bytes`.
    ends: Vec<usize>,
    /// `[256]`: the token of each single byte; `NO_TOKEN` for the bytes that are escaped.
    byte_token: [u32; 256],
    /// The token that announces an escaped byte; `NO_TOKEN` if every byte has a token.
    escape: u32,
    /// `pair_key(left, right)` → the merge that joins them.
    merges: HashMap<u64, Merge>,
    digit: Regex,
    word: Regex,
}

fn err<T>(msg: String) -> Result<T> {
    Err(Error::Tokenizer(msg))
}

impl Tokenizer {
    /// Builds the tokenizer from the model pack's vocabulary and merges. Fails if a byte has no
    /// token and cannot be escaped, or a merge is malformed or names a string that is not in
    /// the vocabulary.
    pub fn new(data: &TokenizerData) -> Result<Tokenizer> {
        let n = data.tokens.len();
        // `u32::MAX` is kept free for `NO_TOKEN`.
        if n == 0 || n >= u32::MAX as usize {
            return err(format!("vocabulary of {n} tokens"));
        }
        let chars = byte_chars();
        let to_byte = char_bytes(&chars);

        // Token bytes. Characters outside the byte-level alphabet (none in SmolLM2, whose
        // special tokens are printable ASCII) stand for their own UTF-8.
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(n);
        for t in &data.tokens {
            for c in t.chars() {
                match to_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            ends.push(bytes.len());
        }

        // Text → id. Later duplicates win, as in llama.cpp's `token_to_id[word] = i`.
        let id_of: HashMap<&str, u32> = data
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();

        let mut byte_token = [NO_TOKEN; 256];
        for (b, c) in chars.iter().enumerate() {
            if let Some(&id) = id_of.get(c.encode_utf8(&mut [0; 4]) as &str) {
                byte_token[b] = id;
            }
        }
        let missing: Vec<usize> = (0..256).filter(|&b| byte_token[b] == NO_TOKEN).collect();
        let escape = match data.token_types.iter().take(n).rposition(|&t| t == CONTROL) {
            _ if missing.is_empty() => NO_TOKEN,
            Some(id) => id as u32,
            None => {
                return err(format!(
                    "bytes {missing:02x?} have no token and there is no control token to escape them with"
                ))
            }
        };
        if escape != NO_TOKEN && byte_token.contains(&escape) {
            return err(format!("the escape token {escape} is also a byte's token"));
        }
        if let Some(b) = missing.iter().find(|&&b| byte_token[b ^ 0x80] == NO_TOKEN) {
            return err(format!(
                "bytes 0x{b:02x} and 0x{:02x} both have no token: one is needed to escape the other",
                b ^ 0x80
            ));
        }

        let mut merges = HashMap::with_capacity(data.merges.len());
        for (rank, m) in data.merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte. A space byte is a whole
            // character in UTF-8, so both halves are `str`s.
            let split = m.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|i| i + 1);
            let Some(at) = split else {
                return err(format!("merge {rank} {m:?} is not \"left right\""));
            };
            let (left, right) = (&m[..at], &m[at + 1..]);
            let look = |s: &str| match id_of.get(s) {
                Some(&id) => Ok(id),
                None => err(format!("merge {rank} {m:?}: {s:?} is not in the vocabulary")),
            };
            let (l, r, token) = (look(left)?, look(right)?, look(&format!("{left}{right}"))?);
            if token == escape {
                return err(format!(
                    "merge {rank} {m:?} makes the escape token, which BPE must never emit"
                ));
            }
            // The first occurrence of a pair keeps its rank (llama.cpp's `emplace`).
            merges.entry(pair_key(l, r)).or_insert(Merge {
                rank: rank as u32,
                token,
            });
        }

        let compile = |p: &str| Regex::new(p).map_err(|e| Error::Tokenizer(format!("pattern {p:?}: {e}")));
        Ok(Tokenizer {
            bytes,
            ends,
            byte_token,
            escape,
            merges,
            digit: compile(DIGIT_PATTERN)?,
            word: compile(WORD_PATTERN)?,
        })
    }

    /// The escape token that `encode` puts before the partner of a byte without a token
    /// (always followed by that partner); `None` when every byte has a token.
    pub fn escape_token(&self) -> Option<u32> {
        (self.escape != NO_TOKEN).then_some(self.escape)
    }

    pub fn vocab_size(&self) -> usize {
        self.ends.len()
    }

    /// The raw bytes of one token; empty for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.ends.len() {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The bytes the tokens spell, escape pairs included (see the module doc). Ids outside the
    /// vocabulary (which `encode` never produces) contribute nothing.
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut i = 0;
        while i < ids.len() {
            if ids[i] == self.escape {
                if let Some(b) = ids.get(i + 1).and_then(|&next| self.escaped(next)) {
                    out.push(b);
                    i += 2;
                    continue;
                }
            }
            out.extend_from_slice(self.token_bytes(ids[i]));
            i += 1;
        }
        out
    }

    /// The byte that `escape, token` stands for, if `token` is the partner of a missing byte.
    fn escaped(&self, token: u32) -> Option<u8> {
        match *self.token_bytes(token) {
            [p] if self.byte_token[p as usize] == token && self.byte_token[(p ^ 0x80) as usize] == NO_TOKEN => {
                Some(p ^ 0x80)
            }
            _ => None,
        }
    }

    /// Tokenizes any byte string (no BOS; see the module doc for the policy on invalid UTF-8).
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(bytes.len() / 3 + 1);
        let mut seen = HashMap::new();
        let mut work = Work::default();
        for chunk in bytes.utf8_chunks() {
            self.pre_tokenize(chunk.valid(), &mut |w: &str| {
                self.word(w.as_bytes(), &mut seen, &mut out, &mut work)
            });
            if !chunk.invalid().is_empty() {
                self.word(chunk.invalid(), &mut seen, &mut out, &mut work);
            }
        }
        out
    }

    /// Appends the tokens of one pre-token. `seen` maps each pre-token already done to where
    /// its tokens sit in `out`: text repeats its words, and most of the work is BPE on those.
    fn word<'a>(&self, w: &'a [u8], seen: &mut HashMap<&'a [u8], (usize, usize)>, out: &mut Vec<u32>, work: &mut Work) {
        match seen.get(w) {
            Some(&(start, end)) => out.extend_from_within(start..end),
            None => {
                let start = out.len();
                self.bpe(w, out, work);
                seen.insert(w, (start, out.len()));
            }
        }
    }

    // --- pre-tokenizer ---

    /// Calls `f` with each pre-token of `text`, in order; together they are `text`.
    fn pre_tokenize<'t>(&self, text: &'t str, f: &mut impl FnMut(&'t str)) {
        let mut start = 0;
        for m in self.digit.find_iter(text) {
            self.split_words(&text[start..m.start()], f);
            f(m.as_str());
            start = m.end();
        }
        self.split_words(&text[start..], f);
    }

    /// The GPT-2 pass over one piece that holds no number character.
    fn split_words<'t>(&self, piece: &'t str, f: &mut impl FnMut(&'t str)) {
        let mut pos = 0;
        while pos < piece.len() {
            // Every character matches some branch, so a match starts at `pos`; should one not,
            // the bytes before it still go out with it, keeping the cover lossless.
            let Some(m) = self.word.find_at(piece, pos) else {
                f(&piece[pos..]);
                return;
            };
            let mut end = m.end();
            // `\s+(?!\S)`: only the whitespace branch ends in whitespace. If more text follows,
            // the run's last character goes to the next pre-token — unless it is the only one.
            if end < piece.len() {
                let mut run = m.as_str().chars();
                if let Some(last) = run.next_back() {
                    if last.is_whitespace() && run.next().is_some() {
                        end -= last.len_utf8();
                    }
                }
            }
            f(&piece[pos..end]);
            pos = end;
        }
    }

    // --- BPE ---

    /// Appends the tokens of one pre-token to `out`. A byte without a token takes part in no
    /// merge, so the stretches between such bytes are merged on their own.
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>, work: &mut Work) {
        let mut rest = word;
        while let Some(i) = rest.iter().position(|&b| self.byte_token[b as usize] == NO_TOKEN) {
            self.merge(&rest[..i], out, work);
            out.extend([self.escape, self.byte_token[(rest[i] ^ 0x80) as usize]]);
            rest = &rest[i + 1..];
        }
        self.merge(rest, out, work);
    }

    /// BPE over bytes that all have tokens.
    fn merge(&self, word: &[u8], out: &mut Vec<u32>, work: &mut Work) {
        if let [b] = word {
            out.push(self.byte_token[*b as usize]);
            return;
        }
        let Work { syms, heap } = work;
        syms.clear();
        heap.clear();
        let n = word.len();
        syms.extend(word.iter().enumerate().map(|(i, &b)| Sym {
            token: self.byte_token[b as usize],
            prev: i.wrapping_sub(1),
            next: i + 1,
        }));
        for i in 1..n {
            self.push_pair(syms, heap, i - 1, i);
        }
        // A stale candidate (one side since merged into something else) is skipped: a symbol's
        // token changes only by growing, so the same tokens at both ends mean the same pair.
        while let Some(Reverse(Candidate {
            left,
            left_token,
            right_token,
            token,
            ..
        })) = heap.pop()
        {
            let right = syms[left].next;
            if syms[left].token != left_token || right >= n || syms[right].token != right_token {
                continue;
            }
            syms[left].token = token;
            syms[left].next = syms[right].next;
            syms[right].token = NO_TOKEN;
            if syms[left].next < n {
                let after = syms[left].next;
                syms[after].prev = left;
                self.push_pair(syms, heap, left, after);
            }
            if syms[left].prev < n {
                self.push_pair(syms, heap, syms[left].prev, left);
            }
        }
        let mut i = 0;
        while i < n {
            out.push(syms[i].token);
            i = syms[i].next;
        }
    }

    fn push_pair(&self, syms: &[Sym], heap: &mut BinaryHeap<Reverse<Candidate>>, left: usize, right: usize) {
        let (left_token, right_token) = (syms[left].token, syms[right].token);
        if let Some(m) = self.merges.get(&pair_key(left_token, right_token)) {
            heap.push(Reverse(Candidate {
                rank: m.rank,
                left,
                left_token,
                right_token,
                token: m.token,
            }));
        }
    }
}

/// No token: a byte that is escaped, a symbol merged into its left neighbour, no escape token.
const NO_TOKEN: u32 = u32::MAX;
/// `tokenizer.ggml.token_type` of a control token (GGUF / llama.cpp `LLAMA_TOKEN_TYPE_CONTROL`).
const CONTROL: i32 = 3;

/// One symbol of a pre-token being merged: a doubly linked list over the byte positions, each
/// live symbol sitting at the position of its first byte.
#[derive(Debug, Clone, Copy)]
struct Sym {
    token: u32,
    /// Position of the previous live symbol; `usize::MAX` for none.
    prev: usize,
    /// Position of the next live symbol; the word's length for none.
    next: usize,
}

/// A merge that was possible when it was queued. Ordered by rank, then position: llama.cpp's
/// order (lowest rank first, leftmost first among equal ranks); the field order is the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    /// Position of the left symbol.
    left: usize,
    left_token: u32,
    right_token: u32,
    /// The token the pair becomes.
    token: u32,
}

/// Buffers reused across the pre-tokens of one `encode`.
#[derive(Default)]
struct Work {
    syms: Vec<Sym>,
    /// Queued merges, smallest first.
    heap: BinaryHeap<Reverse<Candidate>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made vocabulary: the 256 byte characters (ids 0–255 in byte order), one control
    /// token, then the results of `MERGES` in order.
    const MERGES: &[&str] = &["Ġ t", "h e", "a a", "Ġt he", "l o", "lo w", "e r", "low er", "Ġ lower"];

    fn tiny_data() -> TokenizerData {
        let mut tokens: Vec<String> = byte_chars().iter().map(|c| c.to_string()).collect();
        tokens.push("<|endoftext|>".into());
        tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
        let mut token_types = vec![1; tokens.len()];
        token_types[256] = CONTROL;
        TokenizerData {
            tokens,
            merges: MERGES.iter().map(|m| m.to_string()).collect(),
            token_types,
        }
    }

    fn tiny() -> Tokenizer {
        Tokenizer::new(&tiny_data()).unwrap()
    }

    fn id(t: &Tokenizer, s: &str) -> u32 {
        (0..t.vocab_size() as u32)
            .find(|&i| t.token_bytes(i) == s.as_bytes())
            .unwrap()
    }

    fn pieces(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        tiny().pre_tokenize(text, &mut |w| out.push(w));
        out
    }

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let c = byte_chars();
        assert_eq!(
            (c[b'!' as usize], c[b' ' as usize], c[b'\n' as usize], c[0], c[0xAD]),
            ('!', 'Ġ', 'Ċ', 'Ā', 'Ń')
        );
        assert_eq!(char_bytes(&c).len(), 256, "the 256 characters are distinct");
    }

    #[test]
    fn pre_tokenizer_follows_llama_cpp_smollm() {
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(pieces("  leading spaces"), [" ", " leading", " spaces"]);
        assert_eq!(pieces("don't 's 'S"), ["don", "'t", " '", "s", " '", "S"]);
        assert_eq!(pieces("1234 x12"), ["1", "2", "3", "4", " x", "1", "2"]);
        // Number characters split first, so whitespace before one ends its piece and stays whole.
        assert_eq!(pieces("a  1"), ["a", "  ", "1"]);
        // A whitespace run followed by a word gives up its last character even when that is not a
        // space, which then stands alone: "\r\n" before a word is two pre-tokens.
        assert_eq!(pieces("line1\r\nline2"), ["line", "1", "\r", "\n", "line", "2"]);
        assert_eq!(pieces("x \n y"), ["x", " \n", " y"]);
        assert_eq!(
            pieces("tabs\tand  double  "),
            ["tabs", "\t", "and", " ", " double", "  "]
        );
        assert_eq!(pieces("hi!!! ...?"), ["hi", "!!!", " ...?"]);
        assert_eq!(pieces("naïve café ½"), ["naïve", " café", " ", "½"]);
        // Only U+0020 joins the next word; another whitespace character stands alone.
        assert_eq!(pieces("a\u{3000}\u{3000}b"), ["a", "\u{3000}", "\u{3000}", "b"]);
        assert_eq!(pieces("a\u{3000}b"), ["a", "\u{3000}", "b"]);
        // \p{L} is the letter category, not Alphabetic: a combining vowel sign is not a letter.
        assert_eq!(pieces("कि"), ["क", "ि"]);
        assert_eq!(pieces("<|im_start|>"), ["<|", "im", "_", "start", "|>"]);
        assert_eq!(pieces(""), [] as [&str; 0]);
        assert_eq!(pieces("\0\0 \0"), ["\0\0", " \0"]);
    }

    #[test]
    fn merges_lowest_rank_first_then_leftmost() {
        let t = tiny();
        assert_eq!(t.encode(b" the"), [id(&t, " the")]);
        assert_eq!(t.encode(b" lower"), [id(&t, " lower")]);
        // `e r` (rank 6) goes before `low er` (rank 7), so both "er"s form first.
        assert_eq!(t.encode(b"lowerer"), [id(&t, "lower"), id(&t, "er")]);
        assert_eq!(t.encode(b"aaa"), [id(&t, "aa"), id(&t, "a")]);
        assert_eq!(t.encode(b"aaaaa"), [id(&t, "aa"), id(&t, "aa"), id(&t, "a")]);
        assert_eq!(t.encode(b"the"), [id(&t, "t"), id(&t, "he")]);
        assert_eq!(t.encode(b""), [] as [u32; 0]);
    }

    #[test]
    fn special_tokens_are_not_parsed() {
        let t = tiny();
        let ids = t.encode(b"<|endoftext|>");
        assert!(!ids.contains(&id(&t, "<|endoftext|>")));
        assert_eq!(t.decode(&ids), b"<|endoftext|>");
        assert_eq!(t.token_bytes(256), b"<|endoftext|>");
    }

    #[test]
    fn invalid_utf8_round_trips() {
        let t = tiny();
        for x in [
            &b"\xff"[..],
            b"a\xffb",
            b"\xe2\x82",
            b" the\xc3",
            b"\xc3\xa9\xc3",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80 x",
            b"\r\n\0\x80",
        ] {
            let ids = t.encode(x);
            assert_eq!(t.decode(&ids), x, "{x:?}");
        }
        // Each invalid piece is a pre-token of its own, between the valid text around it.
        let b = |x: u8| t.byte_token[x as usize];
        assert_eq!(t.encode(b"a\xffa"), [id(&t, "a"), b(0xff), id(&t, "a")]);
        assert_eq!(
            t.encode(b"aa\xe2\x82aa"),
            [id(&t, "aa"), b(0xe2), b(0x82), id(&t, "aa")]
        );
    }

    /// The tiny vocabulary without the tokens of bytes 0x04 and 0xFF.
    fn tiny_missing() -> Tokenizer {
        let mut d = tiny_data();
        let drop = [byte_chars()[0x04].to_string(), byte_chars()[0xFF].to_string()];
        let keep: Vec<bool> = d.tokens.iter().map(|t| !drop.contains(t)).collect();
        d.tokens = d
            .tokens
            .iter()
            .zip(&keep)
            .filter(|p| *p.1)
            .map(|p| p.0.clone())
            .collect();
        d.token_types = d.token_types.iter().zip(&keep).filter(|p| *p.1).map(|p| *p.0).collect();
        Tokenizer::new(&d).unwrap()
    }

    #[test]
    fn bytes_without_a_token_are_escaped() {
        let t = tiny_missing();
        let esc = id(&t, "<|endoftext|>");
        let b = |x: u8| t.byte_token[x as usize];
        assert_eq!(t.escape, esc);
        // Merges happen on either side of the escaped byte, never across it.
        assert_eq!(
            t.encode(b" the\x04 the\xff"),
            [id(&t, " the"), esc, b(0x84), id(&t, " the"), esc, b(0x7f)]
        );
        assert_eq!(t.encode(b"aa\x04aa"), [id(&t, "aa"), esc, b(0x84), id(&t, "aa")]);
        for x in [
            &b"\x04"[..],
            b"\xff\xff",
            b"\x04\x84\x7f\xff",
            b"a\xff\x04a",
            b"\xef\xbf\xbf\xff",
        ] {
            assert_eq!(t.decode(&t.encode(x)), x, "{x:?}");
        }
        // An escape token not followed by the partner of a missing byte spells its own text.
        assert_eq!(t.decode(&[esc]), b"<|endoftext|>");
        assert_eq!(t.decode(&[esc, b(b'a')]), b"<|endoftext|>a");
        assert_eq!(t.decode(&[esc, esc, b(0x84)]), b"<|endoftext|>\x04");
        // With every byte present nothing is escaped, and the control token is plain text.
        let t = tiny();
        assert_eq!(t.escape, NO_TOKEN);
        assert_eq!(
            t.decode(&[id(&t, "<|endoftext|>"), t.byte_token[0x84]]),
            b"<|endoftext|>\x84"
        );
    }

    #[test]
    fn out_of_range_ids_decode_to_nothing() {
        let t = tiny();
        assert_eq!(t.token_bytes(u32::MAX), b"");
        assert_eq!(t.decode(&[id(&t, "h"), 1 << 30, id(&t, "i")]), b"hi");
        assert_eq!(t.vocab_size(), 256 + 1 + MERGES.len());
    }

    #[test]
    fn bad_data_is_refused() {
        let refused = |d: &TokenizerData| match Tokenizer::new(d) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        let mut d = tiny_data();
        d.tokens.retain(|t| t != "Ġ" && t != "ł"); // 0x20 and 0xA0
        assert!(refused(&d).contains("bytes 0x20 and 0xa0 both have no token"));
        let mut d = tiny_data();
        d.tokens.retain(|t| t != "Ġ");
        d.token_types = vec![1; d.tokens.len()];
        assert!(refused(&d).contains("no control token"));
        let mut d = tiny_data();
        d.merges.push("nospace".into());
        assert!(refused(&d).contains("not \"left right\""));
        let mut d = tiny_data();
        d.merges.push("Ġ x".into());
        assert!(refused(&d).contains("\"Ġx\" is not in the vocabulary"));
        let d = TokenizerData {
            tokens: vec![],
            merges: vec![],
            token_types: vec![],
        };
        assert!(matches!(Tokenizer::new(&d), Err(Error::Tokenizer(_))));
    }

    #[test]
    fn first_of_a_repeated_merge_keeps_its_rank() {
        let mut d = tiny_data();
        // A second "a a" after everything else changes nothing.
        d.merges.push("a a".into());
        let t = Tokenizer::new(&d).unwrap();
        assert_eq!(t.encode(b"aaa"), tiny().encode(b"aaa"));
    }
}
