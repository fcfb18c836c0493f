//! What the offline probes (`dump_tables`, `dump_adapted`, `mix_probe`) share: their
//! `FILE OUT.tsv [TOKENS]` arguments, the real model, the file's tokens, the output file.

use lmz::model::Fracs;
use lmz::{Model, Result};

pub struct Probe {
    pub model: Model,
    pub cfg: lmz::pack::Config,
    pub fr: Fracs,
    /// FILE's tokens, the first TOKENS of them when given.
    pub tokens: Vec<u32>,
    /// OUT.tsv, created.
    pub out: std::io::BufWriter<std::fs::File>,
}

/// Reads the arguments of example `name`, loads the model pack and tokenises FILE.
pub fn probe(name: &str) -> Result<Probe> {
    let args: Vec<String> = std::env::args().collect();
    let (file, out) = match (args.get(1), args.get(2)) {
        (Some(f), Some(o)) => (f, o),
        _ => {
            return Err(lmz::Error::InvalidArgument(format!(
                "usage: {name} FILE OUT.tsv [TOKENS]"
            )))
        }
    };
    let text = std::fs::read(file).map_err(|e| lmz::Error::io(file, e))?;
    let model = lmz::fetch::load(&lmz::fetch::default_pack_path(None))?;
    let cfg = model.config().clone();
    let tok = lmz::tokenizer::Tokenizer::new(&model.tokenizer)?;
    let mut tokens = tok.encode(&text);
    if let Some(n) = args.get(3).and_then(|s| s.parse().ok()) {
        tokens.truncate(n);
    }
    let fr = Fracs::new(&model.weights);
    let out = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| lmz::Error::io(out, e))?);
    Ok(Probe {
        model,
        cfg,
        fr,
        tokens,
        out,
    })
}
