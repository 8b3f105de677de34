//! `hz serve`: a local model (Hugging Face folder or GGUF file) behind an OpenAI-compatible `/v1/chat/completions` on
//! loopback, the AI overseer's default judge.

use anyhow::{bail, Result};
use clap::Args;
use hz_serve::{Engine, ServeConfig, Server};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// The model: a Hugging Face folder (config.json, *.safetensors, tokenizer.json; ChatML
    /// when it has no chat template) or a GGUF file (its own tokenizer and template, else the
    /// family's).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A loopback address: the server has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The model name clients see (default: the folder's or file's name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// `max_tokens` for requests that give none.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Worker threads taking requests (generation itself runs one request at a time).
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub fn run(args: ServeArgs) -> Result<bool> {
    let loopback = args.host == "localhost" || args.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--host {}: hz serve listens on loopback only (127.0.0.1, ::1, localhost)", args.host);
    }
    let name = args
        .name
        .or_else(|| args.model.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "local".into());
    let engine = Engine::load(&args.model)?;
    let config = ServeConfig {
        default_max_tokens: args.max_tokens,
        max_tokens_limit: args.max_tokens.max(4096),
        workers: args.workers.max(1),
        ..ServeConfig::new(name.clone())
    };
    let host = if args.host.contains(':') { format!("[{}]", args.host) } else { args.host.clone() };
    let server = Server::start(engine, &format!("{host}:{}", args.port), config)?;
    eprintln!("serving {name} at {} (POST /chat/completions, GET /models; GET /healthz)", server.base_url());
    server.wait();
    Ok(true)
}
