//! The context policy, and scoring a token sequence under it.
//!
//! Policy (stated by [`Policy::describe`] in every report): the text's tokens are scored in
//! windows of at most `window` positions. Every window starts with the `start` token at
//! position 0 (no BOS is *added to the text*; the start token is context only, and it lets
//! the first text token be predicted like any other). The first window scores all its
//! tokens; each later window scores the next `stride` tokens with the `window − stride`
//! tokens before them as context, re-run from position 0 (so every scored token sees at
//! least `window − stride − 1` tokens of context, and a decoder can redo exactly the same
//! computation from the tokens it has already decoded).
//!
//! How a later window gets its context is the policy's [`KvMode`]: re-run from position 0
//! ([`KvMode::Recompute`], the first format), or kept from the previous window
//! ([`KvMode::Shift`]): the keys and values of the context tokens, already in the KV cache,
//! are moved down to positions `1..` with their keys re-rotated ([`Backend::kv_shift`]), so
//! every token runs through the model once. The positions are the same in both modes; the
//! kept tokens' keys and values differ only in having been computed with the earlier
//! context they saw then (as in any sliding-window cache). The start token's entry at
//! position 0 is never moved: it is the attention sink every window keeps.

use crate::adapt::Online;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{block_on, forward_seq_to_async, Fracs, Readout};
use crate::pack::Config;

/// Where a later window's context comes from (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvMode {
    /// Re-run the context tokens from position 0: every window computed afresh.
    Recompute,
    /// Keep the context tokens' cache entries, shifted down and re-rotated.
    Shift,
}

impl KvMode {
    pub fn name(self) -> &'static str {
        match self {
            KvMode::Recompute => "recompute",
            KvMode::Shift => "shift",
        }
    }
}

impl std::str::FromStr for KvMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "recompute" => Ok(KvMode::Recompute),
            "shift" => Ok(KvMode::Shift),
            _ => Err(format!("unknown KV mode {s:?} (recompute or shift)")),
        }
    }
}

/// [`Policy::shift_for`]'s window and stride (chosen by measurement: BENCHMARKS.md,
/// "Context policy").
pub const SHIFT_WINDOW: usize = 2048;
pub const SHIFT_STRIDE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Positions per window, including the start token.
    pub window: usize,
    /// Tokens scored per window after the first.
    pub stride: usize,
    /// Context-only token at position 0 of every window.
    pub start: u32,
    /// How a later window gets its context.
    pub kv: KvMode,
    /// Whether the model's tables are reweighted by an adaptive bias learned from the
    /// chunk's text so far ([`crate::adapt`], at [`crate::adapt::RATE`]).
    pub adapt: bool,
    /// Whether the n-gram mixer of the chunk's tokens so far is mixed in after the bias
    /// ([`crate::ngram`]).
    pub ngram: bool,
    /// The note frame (compact tag `0xFE`, one chunk): `start` is `<|im_start|>` and the
    /// chunk's tokens follow the known tokens of `user\n` — a chat turn, after which the
    /// Instruct model predicts a short text ~2 % better than after `<|endoftext|>`. The
    /// frame's tokens are run through the model and the online models like the text's but
    /// coded as nothing ([`crate::container::Codec`] knows them).
    pub chat: bool,
}

impl Policy {
    /// What this version writes: [`Policy::mixed_for`].
    pub fn default_for(cfg: &Config) -> Policy {
        Policy::mixed_for(cfg)
    }

    /// The policy of a context mode and online models, with the windows a compact tag
    /// implies (docs/FORMAT.md, "Compact form"): `0xFA` [`Policy::recompute_for`], `0xFB`
    /// [`Policy::shift_for`], `0xFC` [`Policy::adaptive_for`], `0xFD` [`Policy::mixed_for`].
    /// The other combinations have no tag (the full form only).
    pub fn for_tag(cfg: &Config, kv: KvMode, adapt: bool, ngram: bool) -> Policy {
        match kv {
            KvMode::Recompute => Policy {
                adapt,
                ngram,
                ..Policy::recompute_for(cfg)
            },
            KvMode::Shift => Policy {
                adapt,
                ngram,
                ..Policy::shift_for(cfg)
            },
        }
    }

    /// Compact tag `0xFD`: [`Policy::adaptive_for`] with the n-gram mixer.
    pub fn mixed_for(cfg: &Config) -> Policy {
        Policy {
            ngram: true,
            ..Policy::adaptive_for(cfg)
        }
    }

    /// Compact tag `0xFC`: [`Policy::shift_for`] with the adaptive bias.
    pub fn adaptive_for(cfg: &Config) -> Policy {
        Policy {
            adapt: true,
            ..Policy::shift_for(cfg)
        }
    }

    /// Compact tag `0xFB`: windows of [`SHIFT_WINDOW`], stride [`SHIFT_STRIDE`], the context
    /// kept in the KV cache, the model's tables as they are.
    pub fn shift_for(cfg: &Config) -> Policy {
        let window = SHIFT_WINDOW.min(cfg.ctx);
        Policy {
            window,
            stride: SHIFT_STRIDE.min(window / 2).max(1),
            start: cfg.doc_start,
            kv: KvMode::Shift,
            adapt: false,
            ngram: false,
            chat: false,
        }
    }

    /// The first format's policy (compact tag `0xFA`): windows of 2048, stride 1024,
    /// the context recomputed.
    pub fn recompute_for(cfg: &Config) -> Policy {
        Policy {
            window: 2048.min(cfg.ctx),
            stride: 1024.min(cfg.ctx / 2).max(1),
            start: cfg.doc_start,
            kv: KvMode::Recompute,
            adapt: false,
            ngram: false,
            chat: false,
        }
    }

    pub fn validate(&self, cfg: &Config) -> Result<()> {
        if self.window < 2 || self.window > cfg.ctx || self.stride == 0 || self.stride >= self.window {
            return Err(Error::InvalidArgument(format!(
                "window {} / stride {} must satisfy 0 < stride < window ≤ {}",
                self.window, self.stride, cfg.ctx
            )));
        }
        if self.start as usize >= cfg.vocab {
            return Err(Error::InvalidArgument(format!(
                "start token {} is outside the vocabulary",
                self.start
            )));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "windows of {} positions (start token {} + up to {} text tokens), stride {}: each scored token sees ≥ {} tokens of context, {}; no BOS added to the text{}{}",
            self.window,
            self.start,
            self.window - 1,
            self.stride,
            self.window - self.stride - 1,
            match self.kv {
                KvMode::Recompute => "recomputed for each window",
                KvMode::Shift => "kept in the KV cache across windows (shifted, re-rotated)",
            },
            match (self.adapt, self.ngram) {
                (false, false) => "",
                (true, false) => "; the model's tables reweighted by an adaptive bias",
                (false, true) => "; the model's tables mixed with an n-gram model of the chunk",
                (true, true) => "; the model's tables reweighted by an adaptive bias and mixed with an n-gram model of the chunk",
            },
            if self.chat { "; the text framed as a chat turn (<|im_start|>user)" } else { "" }
        )
    }
}

/// One window: input `[start] + tokens[ctx_start..end-1]`, predicting `tokens[ctx_start..end]`,
/// of which `tokens[score_start..end]` are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub ctx_start: usize,
    pub score_start: usize,
    pub end: usize,
}

impl Window {
    /// The window's input tokens.
    pub fn input(&self, start: u32, tokens: &[u32]) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.end - self.ctx_start);
        v.push(start);
        v.extend_from_slice(&tokens[self.ctx_start..self.end - 1]);
        v
    }
    /// Index of the first scored prediction within the window's outputs.
    pub fn logits_from(&self) -> usize {
        self.score_start - self.ctx_start
    }
    /// [`KvMode::Shift`]: where this (later) window's context is in the cache that `prev`
    /// left (the cache position of `tokens[self.ctx_start]`), and how many tokens it keeps
    /// (`tokens[ctx_start..score_start − 1]`, moved to positions `1..`).
    pub fn shift_from(&self, prev: &Window) -> (usize, usize) {
        (
            self.ctx_start - prev.ctx_start + 1,
            self.score_start - 1 - self.ctx_start,
        )
    }
}

/// The window that scores from `score_start` in a text of `n` tokens. Its nominal end is
/// `window` (the first) or `score_start + stride`, and it starts `window` positions before
/// that nominal end; the end of the text only cuts it short. So which tokens a window sees
/// depends only on the tokens before its scored ones, never on how long the text is: a
/// decoder that does not know the token count repeats exactly the same windows.
pub fn window_at(score_start: usize, n: usize, p: &Policy) -> Window {
    let nominal = if score_start == 0 {
        p.window
    } else {
        score_start + p.stride
    };
    Window {
        ctx_start: nominal.saturating_sub(p.window),
        score_start,
        end: n.min(nominal),
    }
}

/// The windows covering `n` tokens.
pub fn windows(n: usize, p: &Policy) -> Vec<Window> {
    let mut out = Vec::new();
    let mut score_start = 0;
    while score_start < n {
        let w = window_at(score_start, n, p);
        out.push(w);
        score_start = w.end;
    }
    out
}

/// Runs the model over `tokens` under `policy` and calls `sink(i, table)` with the
/// frequency table predicting `tokens[i]`, for every i in order. `progress(done, total)`
/// is called after each window.
pub fn score<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    policy: &Policy,
    sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    block_on(score_async(b, cfg, fr, tokens, policy, sink, &mut |d, t| {
        progress(d, t);
        Ok(())
    }))
}

/// [`score`] for any engine (see [`crate::model::forward_async`]); an error from
/// `progress` (e.g. [`crate::Error::Cancelled`]) stops it.
pub async fn score_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    policy: &Policy,
    sink: &mut dyn FnMut(usize, &[u32]) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    score_to_async(b, cfg, fr, tokens, policy, &mut Scored::Tables(sink), progress).await
}

/// [`score_async`], but handing over only the coder's range of each token, `sink(i, cum,
/// freq)` of `tokens[i]` in its table: compression's readout ([`Backend::ranges`]).
pub async fn score_ranges_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    policy: &Policy,
    sink: &mut dyn FnMut(usize, u32, u32) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    score_to_async(b, cfg, fr, tokens, policy, &mut Scored::Ranges(sink), progress).await
}

/// Where the scores of [`score_to_async`] go (token index first).
enum Scored<'a> {
    Tables(&'a mut dyn FnMut(usize, &[u32]) -> Result<()>),
    Ranges(&'a mut dyn FnMut(usize, u32, u32) -> Result<()>),
}

async fn score_to_async<B: Backend>(
    b: &mut B,
    cfg: &Config,
    fr: &Fracs,
    tokens: &[u32],
    policy: &Policy,
    out: &mut Scored<'_>,
    progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    policy.validate(cfg)?;
    // The online models need each whole table (and learn from it): the ranges are then read
    // from their tables here, not by the engine.
    let mut online = Online::new(cfg.vocab, policy.adapt, policy.ngram);
    let mut prev: Option<Window> = None;
    for w in windows(tokens.len(), policy) {
        // What runs, from which position, and where its scored rows start.
        let input;
        let (run, pos0, logits_from) = match (policy.kv, prev) {
            (KvMode::Shift, Some(p)) => {
                // The cache holds [start] + tokens[p.ctx_start..p.end − 1]; keep the context
                // tokens[w.ctx_start..w.score_start − 1] at positions 1.., run the rest.
                let (src, keep) = w.shift_from(&p);
                b.kv_shift(0, src, 1, keep)?;
                (&tokens[w.score_start - 1..w.end - 1], 1 + keep, 0)
            }
            _ => {
                input = w.input(policy.start, tokens);
                (&input[..], 0, w.logits_from())
            }
        };
        // Row i of the logits predicts tokens[w.score_start + i].
        let at = w.score_start;
        match (&mut *out, &mut online) {
            (Scored::Tables(sink), None) => {
                forward_seq_to_async(
                    b,
                    cfg,
                    fr,
                    run,
                    pos0,
                    logits_from,
                    Readout::Tables(&mut |i, f| sink(at + i, f)),
                )
                .await?
            }
            (Scored::Ranges(sink), None) => {
                forward_seq_to_async(
                    b,
                    cfg,
                    fr,
                    run,
                    pos0,
                    logits_from,
                    Readout::Ranges(&tokens[at..w.end], &mut |i, c, f| sink(at + i, c, f)),
                )
                .await?
            }
            (out, Some(on)) => {
                let mut mixed = |i: usize, f: &[u32]| -> Result<()> {
                    let t = tokens[at + i];
                    on.step(f, |r| {
                        match out {
                            Scored::Tables(sink) => sink(at + i, r)?,
                            Scored::Ranges(sink) => {
                                let (c, fr) = crate::coder::cum_freq(r, t).ok_or_else(|| {
                                    Error::InvalidArgument(format!("token {t} outside the vocabulary"))
                                })?;
                                sink(at + i, c, fr)?
                            }
                        }
                        Ok(t)
                    })?;
                    Ok(())
                };
                forward_seq_to_async(b, cfg, fr, run, pos0, logits_from, Readout::Tables(&mut mixed)).await?
            }
        }
        progress(w.end, tokens.len())?;
        prev = Some(w);
    }
    Ok(())
}

/// Ideal code length of a scored sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CodeLength {
    pub tokens: usize,
    pub bits: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_token_once_with_enough_context() {
        let p = Policy {
            window: 8,
            stride: 3,
            start: 1,
            kv: KvMode::Recompute,
            adapt: false,
            ngram: false,
            chat: false,
        };
        for n in 0..40 {
            let ws = windows(n, &p);
            let mut next = 0;
            for w in &ws {
                assert_eq!(w.score_start, next);
                assert!(w.end > w.score_start && w.end <= n);
                assert!(w.end - w.ctx_start <= p.window);
                if w.score_start > 0 {
                    assert!(w.score_start - w.ctx_start >= p.window - p.stride - 1 || w.ctx_start == 0);
                }
                next = w.end;
            }
            assert_eq!(next, n);
            // A window's context never depends on the text's length.
            for w in &ws {
                let longer = window_at(w.score_start, n + 100, &p);
                assert_eq!((w.ctx_start, w.score_start), (longer.ctx_start, longer.score_start));
            }
        }
        let w = windows(20, &p)[1];
        let toks: Vec<u32> = (100..120).collect();
        let input = w.input(1, &toks);
        assert_eq!(input.len(), w.end - w.ctx_start);
        assert_eq!(input[0], 1);
    }
}
