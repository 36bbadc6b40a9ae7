//! Finding and checking the `cometbft` binary, and editing its config.toml.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The CometBFT minor version this node speaks (ABCI 2.0 with FinalizeBlock).
pub const REQUIRED_MINOR: &str = "0.38.";

/// `$REPLICODE_COMETBFT`, else `cometbft` on PATH, else `~/go/bin/cometbft`.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("REPLICODE_COMETBFT") {
        return Ok(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("cometbft");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = Path::new(&home).join("go/bin/cometbft");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("cometbft not found on PATH, in ~/go/bin or in $REPLICODE_COMETBFT (hint: run scripts/setup.sh)")
}

/// Returns the binary after checking `cometbft version` is 0.38.x.
pub fn checked_binary() -> anyhow::Result<PathBuf> {
    let bin = binary()?;
    let out = Command::new(&bin)
        .arg("version")
        .output()
        .with_context(|| format!("cannot run {} version", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !version.starts_with(REQUIRED_MINOR) {
        bail!(
            "{} reports version {version:?}; RepliCode needs CometBFT {REQUIRED_MINOR}x (hint: scripts/setup.sh installs v0.38.25)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Runs cometbft with `args`, failing with its stderr.
pub fn run(bin: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("cannot run cometbft {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "cometbft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets `key = value` in `[section]` (empty = top level) of a TOML text, keeping
/// every other line and comment. `value` is written verbatim (quote strings yourself).
pub fn set_toml(text: &str, section: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let mut current = String::new();
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            current = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if current == section {
            if let Some((k, _)) = trimmed.split_once('=') {
                if k.trim() == key && !trimmed.starts_with('#') {
                    out.push(format!("{key} = {value}"));
                    found = true;
                    continue;
                }
            }
        }
        out.push(line.to_string());
    }
    if !found {
        bail!("config.toml has no `{key}` in [{section}]");
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    Ok(joined)
}

/// Reads `key` in `[section]` of a TOML text (strings unquoted).
pub fn get_toml(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            current = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if current == section {
            if let Some((k, v)) = trimmed.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    None
}

/// Strips `tcp://` from a CometBFT listen address.
pub fn socket_addr(laddr: &str) -> anyhow::Result<std::net::SocketAddr> {
    let bare = laddr.strip_prefix("tcp://").unwrap_or(laddr);
    bare.parse()
        .with_context(|| format!("{laddr:?} is not a tcp://IP:PORT address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "proxy_app = \"tcp://127.0.0.1:26658\"\n[rpc]\n# c\nladdr = \"tcp://0.0.0.0:26657\"\n[p2p]\nladdr = \"tcp://0.0.0.0:26656\"\n";

    #[test]
    fn set_and_get_within_section() {
        let text = set_toml(SAMPLE, "p2p", "laddr", "\"tcp://127.0.0.1:9\"").expect("set");
        assert_eq!(
            get_toml(&text, "p2p", "laddr").as_deref(),
            Some("tcp://127.0.0.1:9")
        );
        assert_eq!(
            get_toml(&text, "rpc", "laddr").as_deref(),
            Some("tcp://0.0.0.0:26657")
        );
        assert_eq!(
            get_toml(&text, "", "proxy_app").as_deref(),
            Some("tcp://127.0.0.1:26658")
        );
        assert!(text.contains("# c"));
    }

    #[test]
    fn missing_key_is_an_error() {
        assert!(set_toml(SAMPLE, "rpc", "nope", "1").is_err());
    }

    #[test]
    fn socket_addr_strips_scheme() {
        assert_eq!(socket_addr("tcp://127.0.0.1:5").expect("addr").port(), 5);
    }
}
