//! `hz key`: API keys in the OS keychain (the Secret Service on Linux, e.g. GNOME Keyring),
//! and the lookup the overseer uses: environment first, then the keychain. A secret is read
//! from standard input, never from the command line, where `ps` and shell history see it.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hz_core::OverseerConfig;
use hz_gym::overseer::{api_key_names, is_loopback};
use std::io::{IsTerminal, Read, Write};

/// Keychain service every 440hz secret is filed under; the entry's user is the key's name.
pub const SERVICE: &str = "440hz";

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Store a secret under NAME (e.g. OPENROUTER_API_KEY), read from standard input.
    Set { name: String },
    /// Print the secret stored under NAME; with --exists print only whether there is one
    /// (exit 1 when there is none).
    Get {
        name: String,
        #[arg(long)]
        exists: bool,
    },
    /// Remove the secret stored under NAME.
    Delete { name: String },
}

pub fn run(cmd: KeyCmd) -> Result<bool> {
    match cmd {
        KeyCmd::Set { name } => {
            let entry = entry(&name)?;
            let secret = read_secret(&name)?;
            entry.set_password(&secret).map_err(|e| keychain_error(&name, "store", e))?;
            println!("{name}: stored in the keychain");
            Ok(true)
        }
        KeyCmd::Get { name, exists } => match entry(&name)?.get_password() {
            Ok(secret) if exists => {
                drop(secret);
                println!("{name}: stored in the keychain");
                Ok(true)
            }
            Ok(secret) => {
                println!("{secret}");
                Ok(true)
            }
            Err(keyring::Error::NoEntry) => {
                eprintln!("{name}: not in the keychain");
                Ok(false)
            }
            Err(e) => Err(keychain_error(&name, "read", e)),
        },
        KeyCmd::Delete { name } => match entry(&name)?.delete_credential() {
            Ok(()) => {
                println!("{name}: deleted from the keychain");
                Ok(true)
            }
            Err(keyring::Error::NoEntry) => bail!("{name}: not in the keychain"),
            Err(e) => Err(keychain_error(&name, "delete", e)),
        },
    }
}

/// The secret stored under `name`, `None` when there is none.
pub fn keychain_get(name: &str) -> Result<Option<String>> {
    match entry(name)?.get_password() {
        Ok(s) => Ok(Some(s)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(keychain_error(name, "read", e)),
    }
}

/// The overseer's API key: for each name from [`api_key_names`], the environment variable,
/// then the keychain entry. `None` (with a warning unless the endpoint is on this machine)
/// when nothing is found.
pub fn resolve_api_key(cfg: &OverseerConfig) -> Option<String> {
    let names = api_key_names(cfg);
    // Without a session bus, libdbus would try to autolaunch one (X11 only): skip quietly.
    let keychain = cfg!(not(target_os = "linux")) || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
    for name in &names {
        if let Some(v) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
            tracing::debug!(key = %name, "overseer API key from the environment");
            return Some(v);
        }
        if keychain {
            match keychain_get(name) {
                Ok(Some(v)) => {
                    tracing::debug!(key = %name, "overseer API key from the keychain");
                    return Some(v);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(key = %name, error = %format!("{e:#}"), "keychain lookup failed"),
            }
        }
    }
    if !is_loopback(&cfg.base_url) {
        tracing::warn!(
            endpoint = %cfg.base_url,
            "no overseer API key in ${} or the keychain (`hz key set {}`); sending none",
            names.join(" / $"),
            names[0]
        );
    }
    None
}

fn entry(name: &str) -> Result<keyring::Entry> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        bail!("key name {name:?}: use 1 to 128 letters, digits, `_`, `-` or `.` (e.g. OPENROUTER_API_KEY)");
    }
    keyring::Entry::new(SERVICE, name).map_err(|e| keychain_error(name, "open", e))
}

/// From a terminal, one line; from a pipe or file, everything, less one trailing newline.
fn read_secret(name: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let mut secret = String::new();
    if stdin.is_terminal() {
        eprint!("secret for {name} (one line; it is shown as you type): ");
        std::io::stderr().flush().ok();
        stdin.read_line(&mut secret).context("reading the secret from standard input")?;
    } else {
        stdin.lock().read_to_string(&mut secret).context("reading the secret from standard input")?;
    }
    let secret = secret.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&secret);
    if secret.trim().is_empty() {
        bail!("no secret on standard input: pipe it in, e.g. `printf %s \"$KEY\" | hz key set {name}`");
    }
    Ok(secret.to_string())
}

fn keychain_error(name: &str, what: &str, e: keyring::Error) -> anyhow::Error {
    let hint = match &e {
        keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_) => {
            if cfg!(target_os = "linux") && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
                " (no D-Bus session: DBUS_SESSION_BUS_ADDRESS is unset; run inside a desktop session or `dbus-run-session`)"
            } else {
                " (is a Secret Service such as gnome-keyring-daemon running and unlocked?)"
            }
        }
        _ => "",
    };
    anyhow::anyhow!("keychain: cannot {what} {name}: {e}{hint}")
}
