//! Bearer tokens with scopes. Tokens are kept only as SHA-256 hashes and compared in constant
//! time; the tokens file is re-read when its modification time changes, so tokens rotate
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

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

/// Parse `TOKEN scopes` / `sha256:HEX scopes` lines (scopes comma-separated; default `predict`).
pub fn parse_tokens(text: &str, origin: &str) -> Result<Vec<TokenLine>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let tok = parts.next().unwrap_or_default();
        let scopes = parts.next().unwrap_or("predict");
        let h = match tok.strip_prefix("sha256:") {
            Some(hex_digest) => {
                let v = hex::decode(hex_digest)
                    .map_err(|_| format!("{origin} line {}: bad sha256 hex", i + 1))?;
                <[u8; 32]>::try_from(v.as_slice())
                    .map_err(|_| format!("{origin} line {}: sha256 must be 64 hex digits", i + 1))?
            }
            None => hash(tok),
        };
        let (mut p, mut a) = (false, false);
        for s in scopes.split(',') {
            match s.trim() {
                "predict" => p = true,
                "admin" => a = true,
                other => {
                    return Err(format!(
                        "{origin} line {}: unknown scope '{other}' (predict, admin)",
                        i + 1
                    ))
                }
            }
        }
        out.push((hex::encode(&h[..4]), h, p, a));
    }
    Ok(out)
}

impl Tokens {
    /// Tokens from `LEPTON_TOKENS` (`token:scope,scope;token2:scope`) and an optional file.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Self, String> {
        let to_entries = |v: Vec<TokenLine>| -> Vec<Entry> {
            v.into_iter()
                .map(|(id, hash, predict, admin)| Entry {
                    hash,
                    predict,
                    admin,
                    id,
                })
                .collect()
        };
        let env_entries = match env {
            Some(env) => {
                let text: String = env
                    .split(';')
                    .map(|p| p.replacen(':', " ", 1) + "\n")
                    .collect();
                to_entries(parse_tokens(&text, "LEPTON_TOKENS")?)
            }
            None => Vec::new(),
        };
        let t = Tokens {
            file: file.map(Path::to_path_buf),
            env_entries: env_entries.clone(),
            ..Default::default()
        };
        let mut entries = env_entries;
        if let Some(f) = file {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            entries.extend(to_entries(parse_tokens(&text, &f.display().to_string())?));
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
        match std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_tokens(&t, &f.display().to_string()))
        {
            Ok(list) => {
                let mut new: Vec<Entry> = list
                    .into_iter()
                    .map(|(id, hash, predict, admin)| Entry {
                        hash,
                        predict,
                        admin,
                        id,
                    })
                    .collect();
                new.extend(self.env_entries.iter().cloned());
                *self.entries.write().expect("lock") = new;
                *self.mtime.write().expect("lock") = mtime;
                tracing::info!(file = %f.display(), "reloaded API tokens");
            }
            Err(e) => {
                tracing::error!(error = %e, "keeping the old tokens: cannot reload the tokens file")
            }
        }
    }

    /// Check an `Authorization` header value for `scope`. No tokens configured = open access.
    pub fn authorize(&self, header: Option<&str>, scope: Scope) -> Result<Caller, ApiError> {
        let entries = self.entries.read().expect("lock");
        if entries.is_empty() {
            return Ok(Caller {
                token_id: "anonymous".into(),
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
            .contains("unknown scope 'root'"));
    }
}
