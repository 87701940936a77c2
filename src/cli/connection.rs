//! Where a client subcommand connects and what it makes of the answer: [`ClientArgs`]
//! resolved to an address, CA, token and format ([`Resolved`]), the connected [`Conn`], the
//! advice attached to a failed connection ([`Conn::explain`]), and an answer's status turned
//! into a [`CliError`] or printed ([`Conn::show`]).
//!
//! Invariants:
//! - The one place where to connect is decided: a flag, else `RAFTSAFE_*`, else `VAULT_*`,
//!   else the default ([`DEFAULT_ADDR`]); an empty variable counts as unset.
//! - A missing token is refused before any request is made (every call but `health` needs
//!   one); the token goes into the [`Client`] and nowhere else: nothing here prints it.
//! - A transport error leaves with what to try next (start a node, fix `--addr`, pass
//!   `--cacert`, use http for a dev node); an error status leaves as [`CliError::NotFound`]
//!   for 404 (exit code 2) and [`CliError::Server`] otherwise.

use std::path::PathBuf;

use serde_json::Value;

use super::output;
use super::{CliError, ClientArgs, Format, View};
use crate::client::{Client, ClientError, ClientOptions, FailureKind, Response};

/// The default API address: the dev store's.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8700";

/// A connected client and how to print its answers.
pub(super) struct Conn {
    pub(super) client: Client,
    /// The address as resolved, for error messages.
    addr: String,
    /// Whether a CA file was given (an https address without one is the usual TLS mistake).
    has_ca: bool,
    pub(super) format: Format,
    field: Option<String>,
}

/// Where to connect, from the flags and the environment (`env` is [`std::env::var`] outside
/// tests).
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    addr: String,
    cacert: Option<PathBuf>,
    token: Option<String>,
    format: Format,
}

impl ClientArgs {
    /// Flag, else `RAFTSAFE_*`, else `VAULT_*`, else the default. An empty variable counts as
    /// unset (as clap and Vault treat them).
    fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Resolved, CliError> {
        let var = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        let format = match (&self.format, var(&["RAFTSAFE_FORMAT"])) {
            (Some(f), _) => *f,
            (None, Some(v)) => <Format as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
                CliError::Usage(format!(
                    "RAFTSAFE_FORMAT='{v}' is not a format: use table or json"
                ))
            })?,
            (None, None) => Format::Table,
        };
        Ok(Resolved {
            addr: self
                .addr
                .clone()
                .or_else(|| var(&["RAFTSAFE_ADDR", "VAULT_ADDR"]))
                .unwrap_or_else(|| DEFAULT_ADDR.to_string()),
            cacert: self.cacert.clone().or_else(|| {
                var(&["RAFTSAFE_CACERT", "RAFTSAFE_CA", "VAULT_CACERT"]).map(PathBuf::from)
            }),
            token: self
                .token
                .clone()
                .or_else(|| var(&["RAFTSAFE_TOKEN", "VAULT_TOKEN"])),
            format,
        })
    }

    /// The output settings alone (for subcommands that print without a server).
    pub(super) fn format(&self) -> Result<Format, CliError> {
        Ok(self.resolve(|n| std::env::var(n).ok())?.format)
    }

    /// A client for the resolved address. `needs_token`: refuse now, before any request, if
    /// there is no token (every call but `health` needs one).
    pub(super) fn connect(&self, needs_token: bool) -> Result<Conn, CliError> {
        let r = self.resolve(|n| std::env::var(n).ok())?;
        if needs_token && r.token.is_none() {
            return Err(CliError::Usage(
                "no token: set RAFTSAFE_TOKEN or pass --token".into(),
            ));
        }
        let has_ca = r.cacert.is_some();
        let client = Client::new(
            &r.addr,
            ClientOptions {
                ca_file: r.cacert,
                token: r.token,
                ..Default::default()
            },
        )?;
        Ok(Conn {
            addr: client.base().to_string(),
            client,
            has_ca,
            format: r.format,
            field: self.field.clone(),
        })
    }
}

impl Conn {
    /// A transport failure, with what to do about it.
    pub(super) fn explain(&self, e: ClientError) -> CliError {
        let ClientError::Transport { kind, message, .. } = &e else {
            return CliError::Client(e);
        };
        let https = self.addr.starts_with("https://");
        let lower = message.to_ascii_lowercase();
        let refused = *kind == FailureKind::Connect && lower.contains("refused");
        let tls = ["certificate", "unknownissuer", "tls", "handshake"]
            .iter()
            .any(|w| lower.contains(w));
        // What a plain-HTTP listener (a dev-mode node) sends back to a TLS hello.
        let plain = lower.contains("invalidcontenttype") || lower.contains("corrupt message");
        if https && plain {
            return CliError::Connection(format!(
                "{e}\n{} did not answer in TLS: a dev-mode node serves plain HTTP, use \
                 http://{}",
                self.addr,
                self.addr.trim_start_matches("https://")
            ));
        }
        if refused || (*kind == FailureKind::Connect && !tls) {
            let why = if refused {
                "connection refused"
            } else {
                message
            };
            return CliError::Connection(format!(
                "cannot connect to {}: {why}\nis a node running there? Start one with \
                 `raftsafe serve`, or point --addr / RAFTSAFE_ADDR at a node",
                self.addr
            ));
        }
        if https && !self.has_ca && *kind != FailureKind::Timeout {
            return CliError::Connection(format!(
                "{e}\n{} is https: pass --cacert FILE or set RAFTSAFE_CACERT to the CA that \
                 signed the node's certificate",
                self.addr
            ));
        }
        if https && tls {
            return CliError::Connection(format!(
                "{e}\ncheck that --cacert / RAFTSAFE_CACERT is the CA that signed this node's \
                 certificate, and that the address is a name the certificate holds"
            ));
        }
        if !https && *kind == FailureKind::Other {
            return CliError::Connection(format!(
                "{e}\nif the node serves https, use an https:// address and --cacert"
            ));
        }
        CliError::Client(e)
    }

    /// Prints a successful answer as `view` (or its `--field`) and maps an error status to a
    /// [`CliError`].
    pub(super) fn show(&self, resp: Response, view: View) -> Result<(), CliError> {
        if !resp.is_success() {
            return Err(status_error(&resp));
        }
        if let Some(key) = &self.field {
            let v = output::field(self.format, &resp.body, key)
                .ok_or_else(|| CliError::NotFound(format!("no field '{key}' in the answer")))?;
            println!("{v}");
            return Ok(());
        }
        let body = if resp.body.is_null() && !resp.bytes.is_empty() {
            Value::String(String::from_utf8_lossy(&resp.bytes).into_owned())
        } else {
            resp.body
        };
        if let Some(text) = output::render(self.format, &view, &body) {
            println!("{text}");
        }
        Ok(())
    }
}

/// An error status as a [`CliError`] (404 is [`CliError::NotFound`]).
pub(super) fn status_error(resp: &Response) -> CliError {
    match resp.status {
        404 => CliError::NotFound(format!("HTTP 404: {}", resp.detail())),
        401 => CliError::Server(format!(
            "HTTP 401: {} (set RAFTSAFE_TOKEN or pass --token)",
            resp.detail()
        )),
        s => CliError::Server(format!("HTTP {s}: {}", resp.detail())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: Option<&str>, token: Option<&str>) -> ClientArgs {
        ClientArgs {
            addr: addr.map(String::from),
            cacert: None,
            token: token.map(String::from),
            format: None,
            field: None,
        }
    }

    #[test]
    fn flag_then_raftsafe_then_vault_then_default() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("RAFTSAFE_ADDR", "http://r:1"),
            ("VAULT_ADDR", "http://v:1"),
            ("RAFTSAFE_TOKEN", "rt"),
            ("VAULT_TOKEN", "vt"),
            ("RAFTSAFE_CA", "old.pem"),
            ("VAULT_CACERT", "v.pem"),
            ("RAFTSAFE_FORMAT", "JSON"),
        ]);
        let r = args(Some("http://flag:1"), Some("ft"))
            .resolve(all)
            .unwrap();
        assert_eq!(
            (r.addr.as_str(), r.token.as_deref()),
            ("http://flag:1", Some("ft"))
        );
        let r = args(None, None).resolve(all).unwrap();
        assert_eq!(
            (r.addr.as_str(), r.token.as_deref()),
            ("http://r:1", Some("rt"))
        );
        assert_eq!(r.cacert, Some(PathBuf::from("old.pem")));
        assert_eq!(r.format, Format::Json);
        let vault = env(&[
            ("RAFTSAFE_ADDR", ""),
            ("VAULT_ADDR", "http://v:1"),
            ("VAULT_TOKEN", "vt"),
            ("VAULT_CACERT", "v.pem"),
        ]);
        let r = args(None, None).resolve(vault).unwrap();
        assert_eq!(
            (r.addr.as_str(), r.token.as_deref()),
            ("http://v:1", Some("vt"))
        );
        assert_eq!(r.cacert, Some(PathBuf::from("v.pem")));
        let r = args(None, None).resolve(env(&[])).unwrap();
        assert_eq!((r.addr.as_str(), r.token), (DEFAULT_ADDR, None));
        assert_eq!(r.format, Format::Table);
        let e = args(None, None)
            .resolve(env(&[("RAFTSAFE_FORMAT", "yaml")]))
            .unwrap_err();
        assert!(e.to_string().contains("RAFTSAFE_FORMAT='yaml'"), "{e}");
    }
}
