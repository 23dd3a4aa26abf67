//! A user's own firewall ruleset, as a file: nftables (`nft -f`, text or `nft -j` JSON) or
//! iptables-save text (`iptables-restore`), told apart by content, never by file name.

use std::path::Path;

use crate::limits;

/// The most a ruleset file may hold.
pub const MAX_RULESET_BYTES: u64 = 4 << 20;

/// Where a firewall sits on the path: the hook a packet from client to server meets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Host {
    /// The client's output hook.
    Client,
    /// The router's forward hook.
    Router,
    /// The server's input hook.
    Server,
}

impl Host {
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Router => "router",
            Self::Server => "server",
        }
    }

    /// The netfilter hook a client-to-server packet meets on this host.
    pub fn hook(self) -> &'static str {
        match self {
            Self::Client => "output",
            Self::Router => "forward",
            Self::Server => "input",
        }
    }
}

/// How a ruleset is written, and so which tool loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `nft -f` text.
    Nftables,
    /// `nft -j -f` JSON (what `nft -j list ruleset` prints).
    NftablesJson,
    /// `iptables-save` text, loaded with `iptables-restore`.
    IptablesSave,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::NftablesJson => "nftables JSON",
            Self::IptablesSave => "iptables-save",
        }
    }

    /// The command that checks a ruleset of this format without loading it (stdin).
    pub fn check_command(self) -> &'static [&'static str] {
        match self {
            Self::Nftables => &["nft", "-c", "-f", "-"],
            Self::NftablesJson => &["nft", "-j", "-c", "-f", "-"],
            Self::IptablesSave => &["iptables-restore", "--test"],
        }
    }

    /// The command that loads it, atomically (stdin).
    pub fn load_command(self) -> &'static [&'static str] {
        match self {
            Self::Nftables => &["nft", "-f", "-"],
            Self::NftablesJson => &["nft", "-j", "-f", "-"],
            Self::IptablesSave => &["iptables-restore"],
        }
    }
}

/// Why a ruleset file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesetError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: limits::ReadError,
    },
    #[error("{path}: {why}")]
    Format { path: String, why: String },
    #[error("{path}: `{tool}` refuses it: {message}")]
    Refused {
        path: String,
        tool: String,
        message: String,
    },
}

/// A ruleset read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRuleset {
    /// The file, as the user named it.
    pub path: String,
    pub text: String,
    pub format: Format,
}

impl UserRuleset {
    /// Reads and recognises the file (at most [`MAX_RULESET_BYTES`]).
    pub fn read(path: &Path) -> Result<Self, RulesetError> {
        let shown = path.display().to_string();
        let text = limits::read_text(path, MAX_RULESET_BYTES, "ruleset").map_err(|source| {
            RulesetError::Read {
                path: shown.clone(),
                source,
            }
        })?;
        let format = detect(&text).map_err(|why| RulesetError::Format {
            path: shown.clone(),
            why,
        })?;
        Ok(Self {
            path: shown,
            text,
            format,
        })
    }
}

/// The format of a ruleset, from its first line that is neither blank nor a comment.
pub fn detect(text: &str) -> Result<Format, String> {
    let Some((number, line)) = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
    else {
        return Err("empty: no rules, not even a table".into());
    };
    let word = line.split_whitespace().next().unwrap_or_default();
    if line.starts_with('{') || line.starts_with('[') {
        return Ok(Format::NftablesJson);
    }
    if line.starts_with('*') || line.starts_with(':') || matches!(word, "-A" | "-I" | "COMMIT") {
        return Ok(Format::IptablesSave);
    }
    const NFT_WORDS: [&str; 11] = [
        "table", "flush", "add", "define", "include", "delete", "destroy", "insert", "create",
        "list", "redefine",
    ];
    if NFT_WORDS.contains(&word) {
        return Ok(Format::Nftables);
    }
    let shown: String = line.chars().take(60).collect();
    Err(format!(
        "line {number}: `{shown}` begins neither an nftables ruleset (`table …`, `flush \
         ruleset`, `{{` for JSON) nor an iptables-save one (`*filter`, `:INPUT ACCEPT`, \
         `-A …`, `COMMIT`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_content() {
        assert_eq!(
            detect("#!/usr/sbin/nft -f\n\nflush ruleset\ntable inet f {}\n"),
            Ok(Format::Nftables)
        );
        assert_eq!(detect("table ip filter {\n}\n"), Ok(Format::Nftables));
        assert_eq!(
            detect("# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"),
            Ok(Format::IptablesSave)
        );
        assert_eq!(
            detect("{\"nftables\": [{\"metainfo\": {}}]}"),
            Ok(Format::NftablesJson)
        );
        assert!(detect("").unwrap_err().contains("empty"));
        assert!(
            detect("# only a comment\n\n")
                .unwrap_err()
                .contains("empty")
        );
        let e = detect("\n\nhello world\n").unwrap_err();
        assert!(e.starts_with("line 3: `hello world`"), "{e}");
    }
}
