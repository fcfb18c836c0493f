//! What a fixed priming text in front of every note would save (issue 7's ratio goal).
//!
//! `cargo run --release --example prime_notes -- TEXT [COUNT]`
//!
//! Takes TEXT's COUNT (default 40) shortest paragraphs of at least 200 bytes (split on blank
//! lines and trimmed, as `scripts/bench-notes.mjs --select notes` does) and prints, for each
//! candidate priming text, the ideal code length of all the notes when each is predicted
//! after `[start] + priming` instead of `[start]` alone. A priming text's keys and values would
//! be computed once and kept, so it costs no time per note.

use lmz::backend::cpu::CpuBackend;
use lmz::model::{forward_seq, Fracs};

const PRIMES: [&str; 6] = [
    "",
    "\n",
    "Note:\n",
    "My notes\n\n",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\n\n",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\n\nHowever little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered as the rightful property of some one or other of their daughters.\n\n",
];

fn main() -> lmz::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .ok_or_else(|| lmz::Error::InvalidArgument("usage: prime_notes TEXT [COUNT]".into()))?;
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(40);
    let text = std::fs::read(file).map_err(|e| lmz::Error::io(file, e))?;
    // Paragraphs as bench-notes.mjs cuts them: blank-line separated, trimmed, ≥ 200 bytes.
    let s: String = text.iter().map(|&b| b as char).collect();
    let mut paras: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut cur = String::new();
    for line in s.split('\n') {
        if line.trim().is_empty() {
            if !cur.trim().is_empty() {
                paras.push((paras.len(), cur.trim().chars().map(|c| c as u8).collect()));
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        paras.push((paras.len(), cur.trim().chars().map(|c| c as u8).collect()));
    }
    let mut notes: Vec<(usize, Vec<u8>)> = paras.into_iter().filter(|p| p.1.len() >= 200).collect();
    notes.sort_by_key(|p| (p.1.len(), p.0));
    notes.truncate(count);
    let bytes: usize = notes.iter().map(|p| p.1.len()).sum();
    let model = lmz::fetch::load(&lmz::fetch::default_pack_path(None))?;
    let cfg = model.config().clone();
    let tok = lmz::tokenizer::Tokenizer::new(&model.tokenizer)?;
    let fr = Fracs::new(&model.weights);
    let mut b = CpuBackend::new(&model, 2048)?;
    println!("{} notes, {bytes} bytes", notes.len());
    let mut base = None;
    for prime in PRIMES {
        let pt = tok.encode(prime.as_bytes());
        let mut bits = 0f64;
        let mut first = 0f64;
        for (_, note) in &notes {
            let nt = tok.encode(note);
            let mut input = vec![cfg.doc_start];
            input.extend_from_slice(&pt);
            input.extend_from_slice(&nt[..nt.len() - 1]);
            forward_seq(&mut b, &cfg, &fr, &input, 0, pt.len(), &mut |i, f| {
                let c = lmz::freq::bits(f, nt[i]);
                bits += c;
                if i == 0 {
                    first += c;
                }
                Ok(())
            })?;
        }
        let base = *base.get_or_insert(bits);
        println!(
            "{:>4} priming tokens: {:8.1} bits = {:6.1} bytes ({:+.2} %), first tokens {:.1} bits/note  {:?}",
            pt.len(),
            bits,
            bits / 8.0,
            100.0 * (bits / base - 1.0),
            first / notes.len() as f64,
            &prime[..prime.len().min(30)]
        );
    }
    Ok(())
}
