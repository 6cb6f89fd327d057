//! LoRA adapters registered on an engine by name ([`crate::Engine::load_adapter`]). A request
//! names one ([`crate::GenerationRequest::with_adapter`]); the engine resolves the name when the
//! request is queued and the sequence holds the adapter until it finishes, so unloading (or
//! replacing) an adapter never changes a running request. Each loaded adapter gets a fresh id
//! that keys its prefix-cache entries: a prefix computed under one adapter (or the base) is never
//! reused under another, nor under a later adapter loaded with the same name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::gguf::LlamaConfig;
use crate::llama::Lora;
use crate::peft::PeftAdapter;
use crate::{Error, Result};

/// Most adapters one engine holds at once (so metrics labels and memory stay bounded).
pub const MAX_ADAPTERS: usize = 32;

/// A loaded adapter.
#[derive(Debug)]
pub struct Adapter {
    pub name: String,
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Prefix-cache key (never 0, the base's key).
    pub(crate) id: u64,
    pub(crate) lora: Lora,
    /// LoRA rank and scale, and values held (`Σ r·(in + out)`).
    pub rank: usize,
    pub scale: f32,
    pub parameters: usize,
}

/// The adapters of one engine, by name.
#[derive(Default)]
pub(crate) struct Adapters {
    map: RwLock<BTreeMap<String, Arc<Adapter>>>,
    next_id: AtomicU64,
}

/// Whether `name` can name an adapter: 1-64 ASCII letters, digits, `-`, `_`, `.`, not starting
/// with `.` (no `:`, which separates a base and an adapter in a request's model name).
pub fn valid_adapter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Adapters {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Adapter>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Adapter>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Read the PEFT folder `dir` for a base of configuration `base` and register it as `name`
    /// (replacing an adapter of that name). Returns whether one was replaced.
    pub(crate) fn load(&self, name: &str, dir: &Path, base: &LlamaConfig) -> Result<bool> {
        if !valid_adapter_name(name) {
            return Err(Error::InvalidRequest {
                field: "name",
                message: format!(
                    "adapter name {name:?}: use 1-64 letters, digits, '-', '_' or '.' (not starting with '.')"
                ),
            });
        }
        {
            let map = self.read();
            if !map.contains_key(name) && map.len() >= MAX_ADAPTERS {
                return Err(Error::InvalidRequest {
                    field: "name",
                    message: format!(
                        "this model already has {MAX_ADAPTERS} adapters loaded; unload one first"
                    ),
                });
            }
        }
        let peft = PeftAdapter::load_for(dir, base)?;
        let lora = Lora::new(&peft, base)?;
        let adapter = Arc::new(Adapter {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            lora,
            rank: peft.config.r,
            scale: peft.config.scale(),
            parameters: peft.parameter_count(),
        });
        let mut map = self.write();
        if !map.contains_key(name) && map.len() >= MAX_ADAPTERS {
            return Err(Error::InvalidRequest {
                field: "name",
                message: format!(
                    "this model already has {MAX_ADAPTERS} adapters loaded; unload one first"
                ),
            });
        }
        Ok(map.insert(name.to_owned(), adapter).is_some())
    }

    /// Remove adapter `name`; running requests keep it until they finish.
    pub(crate) fn unload(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// The adapter named `name`, or [`Error::UnknownAdapter`] listing the loaded ones.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<Adapter>> {
        let map = self.read();
        map.get(name).cloned().ok_or_else(|| Error::UnknownAdapter {
            name: name.to_owned(),
            loaded: if map.is_empty() {
                "none".into()
            } else {
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    pub(crate) fn all(&self) -> Vec<Arc<Adapter>> {
        self.read().values().cloned().collect()
    }
}
