//! Bearer tokens with scopes. Tokens are kept only as SHA-256 hashes and compared in constant
//! time; the tokens file is re-read when its modification time changes, so tokens rotate
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::serve_error::{Result, ServeError};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Predict,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Predict => "predict",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    hash: [u8; 32],
    predict: bool,
    admin: bool,
    /// A stable, non-secret id for logs and rate limits: the first 8 hex digits of the hash.
    id: String,
}

/// The identity a request authenticated as.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
}

impl Caller {
    /// No tokens are configured: every request is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.token_id == ANONYMOUS
    }
}

const ANONYMOUS: &str = "anonymous";

/// The token store.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: RwLock<Vec<Entry>>,
    /// Tokens from the environment, kept across file reloads.
    env_entries: Vec<Entry>,
    file: Option<PathBuf>,
    mtime: RwLock<Option<SystemTime>>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A parsed token line: (id, SHA-256, predict scope, admin scope).
pub type TokenLine = (String, [u8; 32], bool, bool);

/// Tokens shorter than this are accepted with a warning.
const SHORT_TOKEN: usize = 16;

/// One token and its scopes (`None`: the default, `predict`), at `at` (for messages).
fn parse_entry(token: &str, scopes: Option<&str>, at: &str) -> Result<TokenLine> {
    let err = |message: String| ServeError::Token {
        at: at.to_string(),
        message,
    };
    if token.is_empty() {
        return Err(err("empty token".into()));
    }
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(err(format!(
            "the token contains {c:?}; tokens are printable ASCII without spaces"
        )));
    }
    let h = match token.strip_prefix("sha256:") {
        Some(hex_digest) => {
            let v = hex::decode(hex_digest)
                .map_err(|_| err("sha256: expected 64 hex digits".into()))?;
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
                err(format!(
                    "sha256: expected 64 hex digits, got {}",
                    hex_digest.len()
                ))
            })?
        }
        None => {
            if token.len() < SHORT_TOKEN {
                tracing::warn!(at, "API token shorter than {SHORT_TOKEN} characters");
            }
            hash(token)
        }
    };
    let (mut p, mut a) = (false, false);
    match scopes {
        None => p = true,
        Some(list) => {
            for s in list.split(',') {
                match s {
                    "predict" => p = true,
                    "admin" => a = true,
                    "" => return Err(err(format!("empty scope in '{list}' (predict, admin)"))),
                    other => return Err(err(format!("unknown scope '{other}' (predict, admin)"))),
                }
            }
        }
    }
    Ok((hex::encode(&h[..4]), h, p, a))
}

/// Parse a tokens file: one `TOKEN [SCOPES] [# comment]` or `sha256:HEX [SCOPES]` per line,
/// scopes comma-separated (`predict`, `admin`; default `predict`). A line whose first
/// non-blank character is `#` is a comment, and so is everything from a field that starts with
/// `#` after the token; a `#` inside the token is part of it. Any other line shape is an
/// error naming the line, so a typo never yields a token with a different scope.
pub fn parse_tokens(text: &str, origin: &str) -> Result<Vec<TokenLine>> {
    let mut out: Vec<TokenLine> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{origin} line {}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let token = fields.next().unwrap_or_default();
        let mut scopes = None;
        for f in fields {
            if f.starts_with('#') {
                break;
            }
            if scopes.is_some() {
                return Err(ServeError::Token {
                    at,
                    message: format!(
                        "unexpected '{f}' after the scopes (a line is TOKEN [SCOPES] [# comment])"
                    ),
                });
            }
            scopes = Some(f);
        }
        let entry = parse_entry(token, scopes, &at)?;
        if let Some(j) = out.iter().position(|e| e.1 == entry.1) {
            return Err(ServeError::Token {
                at,
                message: format!("the same token as line {}", lines[j]),
            });
        }
        out.push(entry);
        lines.push(i + 1);
    }
    Ok(out)
}

/// Parse `LEPTON_TOKENS`: `TOKEN[:SCOPES];TOKEN2[:SCOPES]...`. The scopes follow the last `:`
/// (so `sha256:HEX:admin` and tokens containing `:` work when scopes are given); empty entries
/// are skipped; `#` has no special meaning. Errors name the entry (1-based).
pub fn parse_env_tokens(env: &str) -> Result<Vec<TokenLine>> {
    let mut out: Vec<TokenLine> = Vec::new();
    for (i, entry) in env.split(';').enumerate() {
        let at = format!("LEPTON_TOKENS entry {}", i + 1);
        if entry.trim().is_empty() {
            continue;
        }
        let (prefix, rest) = match entry.strip_prefix("sha256:") {
            Some(r) => ("sha256:", r),
            None => ("", entry),
        };
        let (token, scopes) = match rest.rsplit_once(':') {
            Some((t, s)) => (format!("{prefix}{t}"), Some(s)),
            None => (format!("{prefix}{rest}"), None),
        };
        let line = parse_entry(&token, scopes, &at)?;
        if out.iter().any(|e| e.1 == line.1) {
            return Err(ServeError::Token {
                at,
                message: "the same token as an earlier entry".into(),
            });
        }
        out.push(line);
    }
    Ok(out)
}

fn to_entries(v: Vec<TokenLine>) -> Vec<Entry> {
    v.into_iter()
        .map(|(id, hash, predict, admin)| Entry {
            hash,
            predict,
            admin,
            id,
        })
        .collect()
}

/// Refuse a token given both in the file and the environment (their scopes could differ).
fn merge(env: &[Entry], file: Vec<Entry>, origin: &str) -> Result<Vec<Entry>> {
    if let Some(e) = file.iter().find(|f| env.iter().any(|e| e.hash == f.hash)) {
        return Err(ServeError::Token {
            at: origin.to_string(),
            message: format!("token {} is also in LEPTON_TOKENS", e.id),
        });
    }
    let mut all = env.to_vec();
    all.extend(file);
    Ok(all)
}

impl Tokens {
    /// Tokens from `LEPTON_TOKENS` (see [`parse_env_tokens`]) and an optional file (see
    /// [`parse_tokens`]).
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Self> {
        let env_entries = match env {
            Some(env) => to_entries(parse_env_tokens(env)?),
            None => Vec::new(),
        };
        let t = Tokens {
            file: file.map(Path::to_path_buf),
            env_entries: env_entries.clone(),
            ..Default::default()
        };
        let mut entries = env_entries;
        if let Some(f) = file {
            let text = std::fs::read_to_string(f).map_err(|source| ServeError::Read {
                path: f.to_path_buf(),
                source,
            })?;
            let origin = f.display().to_string();
            entries = merge(&entries, to_entries(parse_tokens(&text, &origin)?), &origin)?;
            *t.mtime.write().expect("lock") = std::fs::metadata(f).and_then(|m| m.modified()).ok();
        }
        *t.entries.write().expect("lock") = entries;
        Ok(t)
    }

    /// Add a token (tests, programmatic use).
    pub fn add(&self, token: &str, scopes: &[Scope]) {
        let h = hash(token);
        self.entries.write().expect("lock").push(Entry {
            hash: h,
            predict: scopes.contains(&Scope::Predict),
            admin: scopes.contains(&Scope::Admin),
            id: hex::encode(&h[..4]),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.read().expect("lock").is_empty()
    }

    /// Re-read the tokens file if it changed. Errors keep the old tokens and are logged.
    pub fn refresh(&self) {
        let Some(f) = &self.file else { return };
        let mtime = std::fs::metadata(f).and_then(|m| m.modified()).ok();
        if mtime == *self.mtime.read().expect("lock") {
            return;
        }
        let origin = f.display().to_string();
        let loaded = std::fs::read_to_string(f)
            .map_err(|source| ServeError::Read {
                path: f.clone(),
                source,
            })
            .and_then(|t| parse_tokens(&t, &origin))
            .and_then(|list| merge(&self.env_entries, to_entries(list), &origin));
        match loaded {
            Ok(new) => {
                *self.entries.write().expect("lock") = new;
                *self.mtime.write().expect("lock") = mtime;
                tracing::info!(file = %f.display(), "reloaded API tokens");
            }
            Err(e) => {
                // Keep the old tokens, and do not retry until the file changes again.
                *self.mtime.write().expect("lock") = mtime;
                tracing::error!(error = %e.chain(), "keeping the old tokens: cannot reload the tokens file")
            }
        }
    }

    /// Check an `Authorization` header value for `scope`. No tokens configured = open access.
    pub fn authorize(
        &self,
        header: Option<&str>,
        scope: Scope,
    ) -> std::result::Result<Caller, ApiError> {
        let entries = self.entries.read().expect("lock");
        if entries.is_empty() {
            return Ok(Caller {
                token_id: ANONYMOUS.into(),
            });
        }
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let h = hash(token);
        // Compare against every entry so timing does not reveal which one matched.
        let mut found: Option<&Entry> = None;
        for e in entries.iter() {
            if bool::from(e.hash.ct_eq(&h)) {
                found = Some(e);
            }
        }
        let e = found.ok_or(ApiError::Unauthorized)?;
        let allowed = match scope {
            Scope::Predict => e.predict || e.admin,
            Scope::Admin => e.admin,
        };
        if allowed {
            Ok(Caller {
                token_id: e.id.clone(),
            })
        } else {
            Err(ApiError::Forbidden(scope.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_status_codes() {
        let t = Tokens::load(None, Some("p-token:predict;a-token:admin")).unwrap();
        assert!(t.authorize(Some("Bearer p-token"), Scope::Predict).is_ok());
        assert!(matches!(
            t.authorize(Some("Bearer p-token"), Scope::Admin),
            Err(ApiError::Forbidden("admin"))
        ));
        assert!(t.authorize(Some("Bearer a-token"), Scope::Predict).is_ok());
        assert!(matches!(
            t.authorize(Some("Bearer nope"), Scope::Predict),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            t.authorize(None, Scope::Predict),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            t.authorize(Some("Basic abc"), Scope::Predict),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn hashed_entries_and_bad_lines() {
        let h = hex::encode(Sha256::digest(b"secret"));
        let t = Tokens::load(None, None).unwrap();
        assert!(t.authorize(None, Scope::Admin).is_ok(), "no tokens: open");
        let parsed = parse_tokens(&format!("sha256:{h} admin # comment\n"), "f").unwrap();
        assert_eq!(parsed[0].1.to_vec(), hex::decode(&h).unwrap());
        assert!(parse_tokens("tok root\n", "f")
            .unwrap_err()
            .to_string()
            .contains("unknown scope 'root'"));
    }

    fn err(r: Result<Vec<TokenLine>>) -> String {
        r.unwrap_err().to_string()
    }

    /// Issue 12 finding 5: `#` inside a token started a comment, so the real token got 401 and
    /// its prefix got in; `:admin` made a predict token named `admin`.
    #[test]
    fn hash_inside_a_token_is_part_of_it() {
        let t = Tokens::load(None, Some("abc#def:admin")).unwrap();
        assert!(t.authorize(Some("Bearer abc#def"), Scope::Admin).is_ok());
        assert!(t.authorize(Some("Bearer abc"), Scope::Predict).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "# a comment line\nxyz#123 admin # the ops token\n").unwrap();
        let t = Tokens::load(Some(&f), None).unwrap();
        assert!(t.authorize(Some("Bearer xyz#123"), Scope::Admin).is_ok());
        assert!(t.authorize(Some("Bearer xyz"), Scope::Predict).is_err());
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        assert_eq!(
            err(parse_env_tokens(":admin")),
            "LEPTON_TOKENS entry 1: empty token"
        );
        assert!(err(parse_env_tokens("good:predict;tok:"))
            .starts_with("LEPTON_TOKENS entry 2: empty scope"));
        assert!(
            err(parse_env_tokens("my token:predict")).contains("entry 1: the token contains ' '")
        );
        assert!(err(parse_env_tokens("a:predict;a:admin")).contains("entry 2: the same token"));
        assert!(err(parse_env_tokens("my:token")).contains("unknown scope 'token'"));
        assert!(
            err(parse_tokens("ok predict\ntok predict admin\n", "t.txt"))
                .starts_with("t.txt line 2: unexpected 'admin'")
        );
        assert!(err(parse_tokens("a predict\n\na admin\n", "t.txt"))
            .starts_with("t.txt line 3: the same token as line 1"));
        assert!(err(parse_tokens("tok predict,,admin\n", "t.txt")).contains("line 1: empty scope"));
        assert!(err(parse_tokens("sha256:abc admin\n", "t.txt")).contains("line 1: sha256"));
    }

    #[test]
    fn hashed_tokens_in_the_environment_and_colons_in_tokens() {
        let h = hex::encode(Sha256::digest(b"secret"));
        let t = Tokens::load(None, Some(&format!("sha256:{h}:admin;my:token:predict"))).unwrap();
        assert!(t.authorize(Some("Bearer secret"), Scope::Admin).is_ok());
        assert!(t.authorize(Some("Bearer my:token"), Scope::Predict).is_ok());
        // No scopes: predict.
        let t = Tokens::load(None, Some("plain-token-1234567")).unwrap();
        assert!(t
            .authorize(Some("Bearer plain-token-1234567"), Scope::Predict)
            .is_ok());
        assert!(t
            .authorize(Some("Bearer plain-token-1234567"), Scope::Admin)
            .is_err());
    }

    #[test]
    fn a_bad_reload_keeps_the_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "first-token-0001 predict\n").unwrap();
        let t = Tokens::load(Some(&f), None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, "first-token-0001 root\n").unwrap();
        // Make sure the mtime differs even on coarse file systems.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        t.refresh();
        assert!(t
            .authorize(Some("Bearer first-token-0001"), Scope::Predict)
            .is_ok());
    }
}
