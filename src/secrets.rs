//! Secrets kept off the command line (where `ps` shows them to every user):
//! the auth token and forward headers from files or environment variables.

use crate::cli::{ForwardArgs, ServerArgs};
use anyhow::{Context, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The environment variable holding the auth token.
pub const TOKEN_ENV: &str = "RCAPTURE_AUTH_TOKEN";
/// The environment variable holding forward headers, one `K: V` a line.
pub const HEADERS_ENV: &str = "RCAPTURE_FORWARD_HEADERS";

/// A secret file's text; refused if group or others may read it.
fn read_private(flag: &str, path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{flag} {}: the file is readable by other users (mode {mode:04o}); make it private with chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))
}

/// The token of `--auth-token`, `--auth-token-file` or `RCAPTURE_AUTH_TOKEN`
/// (in that order).
pub fn auth_token(a: &ServerArgs) -> anyhow::Result<Option<String>> {
    let (token, from) = if let Some(t) = &a.auth_token {
        (t.clone(), "--auth-token".to_string())
    } else if let Some(p) = &a.auth_token_file {
        let text = read_private("--auth-token-file", p)?;
        let line = text.lines().next().unwrap_or("").trim().to_string();
        (line, format!("--auth-token-file {}", p.display()))
    } else {
        match std::env::var(TOKEN_ENV) {
            Ok(t) => (t.trim().to_string(), TOKEN_ENV.to_string()),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(e) => bail!("{TOKEN_ENV}: {e}"),
        }
    };
    if token.is_empty() {
        bail!("{from}: the token is empty");
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        bail!("{from}: the token contains a space or a control character");
    }
    Ok(Some(token))
}

/// The `K: V` headers of `--forward-header`, `--forward-header-file` and
/// `RCAPTURE_FORWARD_HEADERS`, each with where it came from.
pub fn forward_headers(a: &ForwardArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = a
        .forward_headers
        .iter()
        .map(|h| (h.clone(), "--forward-header".to_string()))
        .collect();
    let mut lines = |text: &str, from: &str| {
        for (n, l) in text.lines().enumerate() {
            let l = l.trim();
            if !l.is_empty() && !l.starts_with('#') {
                out.push((l.to_string(), format!("{from} line {}", n + 1)));
            }
        }
    };
    if let Some(p) = &a.forward_header_file {
        let text = read_private("--forward-header-file", p)?;
        lines(&text, &format!("--forward-header-file {}", p.display()));
    }
    if a.forward.is_some() {
        match std::env::var(HEADERS_ENV) {
            Ok(t) => lines(&t, HEADERS_ENV),
            Err(std::env::VarError::NotPresent) => {}
            Err(e) => bail!("{HEADERS_ENV}: {e}"),
        }
    }
    Ok(out)
}
