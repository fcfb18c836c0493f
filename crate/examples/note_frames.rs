//! What a note's frame costs: the context a note is predicted after, and an end symbol in
//! place of its stored length (issue 28's notes ratio).
//!
//! `cargo run --release --example note_frames -- TEXT [COUNT]`
//!
//! Takes TEXT's COUNT (default 40) shortest paragraphs of at least 200 bytes (as
//! `scripts/bench-notes.mjs --select notes` cuts them) and prints, per frame, the model's
//! ideal code length of all the notes (the LM's tables alone, no online models), with and
//! without an end token after each note, against the length varint the end token would
//! replace.

use lmz::backend::cpu::CpuBackend;
use lmz::model::{forward_seq, Fracs};

fn main() -> lmz::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .ok_or_else(|| lmz::Error::InvalidArgument("usage: note_frames TEXT [COUNT]".into()))?;
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(40);
    let min: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let text = std::fs::read(file).map_err(|e| lmz::Error::io(file, e))?;
    let s: String = text.iter().map(|&b| b as char).collect();
    let mut paras: Vec<(usize, Vec<u8>)> = Vec::new();
    for p in s.split("\n\n").flat_map(|p| p.split("\r\n\r\n")) {
        let t = p.trim();
        if !t.is_empty() {
            paras.push((paras.len(), t.chars().map(|c| c as u8).collect()));
        }
    }
    let mut notes: Vec<(usize, Vec<u8>)> = paras.into_iter().filter(|p| p.1.len() >= min).collect();
    notes.sort_by_key(|p| (p.1.len(), p.0));
    notes.truncate(count);
    let bytes: usize = notes.iter().map(|p| p.1.len()).sum();
    let model = lmz::fetch::load(&lmz::fetch::default_pack_path(None))?;
    let cfg = model.config().clone();
    let tok = lmz::tokenizer::Tokenizer::new(&model.tokenizer)?;
    let id = |s: &str| {
        model
            .tokenizer
            .tokens
            .iter()
            .position(|t| t == s)
            .map(|i| i as u32)
            .ok_or_else(|| lmz::Error::InvalidArgument(format!("no token {s}")))
    };
    let (eot, ims, ime) = (cfg.doc_start, id("<|im_start|>")?, id("<|im_end|>")?);
    let fr = Fracs::new(&model.weights);
    let mut b = CpuBackend::new(&model, 2048)?;
    let varints: usize = notes.iter().map(|p| if p.1.len() < 128 { 1 } else { 2 }).sum();
    println!(
        "{} notes, {bytes} bytes; their lengths as varints: {varints} bytes",
        notes.len()
    );
    let user = tok.encode(b"user\n");
    let chat = |role: &str| [vec![ims], tok.encode(format!("{role}\n").as_bytes())].concat();
    let frames: Vec<(&str, Vec<u32>, u32)> = vec![
        ("<|im_start|>assistant\\n, end <|im_end|>", chat("assistant"), ime),
        (
            "<|im_start|>user\\nNote:\\n, end <|im_end|>",
            [chat("user"), tok.encode(b"Note:\n")].concat(),
            ime,
        ),
        (
            "<|im_end|>\\n<|im_start|>user\\n, end <|im_end|>",
            [vec![ime], tok.encode(b"\n"), chat("user")].concat(),
            ime,
        ),
        ("<|endoftext|> (now)", vec![eot], eot),
        ("<|endoftext|>, end <|endoftext|>", vec![eot], eot),
        (
            "<|im_start|>user\\n, end <|im_end|>",
            [vec![ims], user.clone()].concat(),
            ime,
        ),
        ("<|im_start|>, end <|im_end|>", vec![ims], ime),
        (
            "<|endoftext|><|im_start|>user\\n, end <|im_end|>",
            [vec![eot, ims], user.clone()].concat(),
            ime,
        ),
    ];
    let mut base = None;
    for (name, frame, end) in &frames {
        let (mut bits, mut end_bits) = (0f64, 0f64);
        for (_, note) in &notes {
            let mut nt = tok.encode(note);
            nt.push(*end);
            let mut input = frame.clone();
            input.extend_from_slice(&nt[..nt.len() - 1]);
            let last = nt.len() - 1;
            forward_seq(&mut b, &cfg, &fr, &input, 0, frame.len() - 1, &mut |i, f| {
                let c = lmz::freq::bits(f, nt[i]);
                if i == last {
                    end_bits += c;
                } else {
                    bits += c;
                }
                Ok(())
            })?;
        }
        let base = *base.get_or_insert(bits / 8.0 + varints as f64);
        let with_end = (bits + end_bits) / 8.0;
        println!(
            "{name:48} text {:7.1} B, end token {:5.1} B: with the end token {with_end:7.1} B ({:+.2} %), with the varint {:7.1} B ({:+.2} %)",
            bits / 8.0,
            end_bits / 8.0,
            100.0 * (with_end / base - 1.0),
            bits / 8.0 + varints as f64,
            100.0 * ((bits / 8.0 + varints as f64) / base - 1.0),
        );
    }
    Ok(())
}
