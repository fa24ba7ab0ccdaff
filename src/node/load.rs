//! Loading the node configuration: defaults < TOML file < `WHEP_BRIDGE_*` environment <
//! command-line flags. Each value is applied onto the TOML form of the configuration and
//! checked at once, so a value of the wrong type is reported with its key and where it came
//! from; the merged result is then validated as a whole, again naming key and source:
//!
//! `output.sample_rate = 11025 (from WHEP_BRIDGE_OUTPUT_SAMPLE_RATE): 11025 Hz is not supported …`

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::config::NodeConfig;
use super::keys::{self, KeyDef};
use crate::api::spec::check::check_id;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    /// A command-line flag (the caller maps flags to keys).
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Env(var) => f.write_str(var),
            Self::Flag => f.write_str("command line"),
        }
    }
}

/// Why the configuration cannot be used. Every message names the key and its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("config file {} is not valid TOML: {reason}", path.display())]
    Syntax { path: PathBuf, reason: String },
    #[error("{key} (from {from}): unknown key{hint}")]
    UnknownKey {
        key: String,
        from: Source,
        /// e.g. " (keys of [api]: listen, token, max_body_bytes)".
        hint: String,
    },
    /// `shown` is the value as configured, secrets masked and URLs redacted.
    #[error("{key} = {shown} (from {from}): {reason}")]
    Invalid {
        key: String,
        shown: String,
        from: Source,
        reason: String,
    },
}

/// The configuration being assembled: its TOML form and where each key came from.
struct Layers {
    table: toml::Table,
    sources: BTreeMap<String, Source>,
}

impl Layers {
    /// Sets `def` to `value` (None: unset) and checks that the whole still deserializes.
    fn set(
        &mut self,
        def: &KeyDef,
        value: Option<toml::Value>,
        source: Source,
    ) -> Result<(), ConfigError> {
        let section = self
            .table
            .entry(def.section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section) = section.as_table_mut() else {
            return Err(invalid(def, None, source, "must be a table".to_owned()));
        };
        match &value {
            Some(v) => section.insert(def.name.to_owned(), v.clone()),
            None => section.remove(def.name),
        };
        if let Err(e) = self.table.clone().try_into::<NodeConfig>() {
            return Err(invalid(def, value.as_ref(), source, e.message().to_owned()));
        }
        self.sources.insert(def.key(), source);
        Ok(())
    }
}

fn invalid(
    def: &KeyDef,
    value: Option<&toml::Value>,
    source: Source,
    reason: String,
) -> ConfigError {
    ConfigError::Invalid {
        key: def.key(),
        shown: value.map_or_else(|| "(unset)".to_owned(), |v| def.show(v)),
        from: source,
        reason,
    }
}

fn unknown(key: String, source: Source) -> ConfigError {
    let section = key.split('.').next().unwrap_or_default();
    let names: Vec<&str> = keys::KEYS
        .iter()
        .filter(|d| d.section == section)
        .map(|d| d.name)
        .collect();
    let hint = if names.is_empty() {
        let mut sections: Vec<&str> = keys::KEYS.iter().map(|d| d.section).collect();
        sections.dedup();
        format!(" (sections: {})", sections.join(", "))
    } else {
        format!(" (keys of [{section}]: {})", names.join(", "))
    };
    ConfigError::UnknownKey {
        key,
        from: source,
        hint,
    }
}

/// The host name as a node id, if it is a valid one: `$HOSTNAME`, else `/etc/hostname`.
fn host_name(env_hostname: Option<String>) -> Option<String> {
    env_hostname
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| check_id(h).is_ok())
}

impl NodeConfig {
    /// Loads the configuration: defaults, then `file` (TOML), then the `WHEP_BRIDGE_*`
    /// variables of `env` (see `keys.rs` for the mapping; variables that set no key are
    /// ignored, see [`keys::unknown_env_vars`]), then `overrides` (`("api.listen",
    /// "0.0.0.0:8080")`, from command-line flags). `node.id` left unset is filled from the
    /// host name (`HOSTNAME` in `env`, else `/etc/hostname`), else [`super::FALLBACK_NODE_ID`].
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &[(&str, &str)],
    ) -> Result<NodeConfig, ConfigError> {
        let mut layers = Layers {
            table: toml::Table::try_from(NodeConfig::default()).map_err(|e| {
                ConfigError::Syntax {
                    path: PathBuf::from("(defaults)"),
                    reason: e.to_string(),
                }
            })?,
            sources: BTreeMap::new(),
        };
        if let Some(path) = file {
            Self::apply_file(&mut layers, path)?;
        }
        let mut env_hostname = None;
        for (var, raw) in env {
            if var == "HOSTNAME" {
                env_hostname = Some(raw);
                continue;
            }
            if let Some(def) = keys::find_env(&var) {
                let source = Source::Env(var);
                let value = def
                    .parse(&raw)
                    .map_err(|m| invalid_raw(def, &raw, source.clone(), m))?;
                layers.set(def, value, source)?;
            }
        }
        for (key, raw) in overrides {
            let def = keys::find(key).ok_or_else(|| unknown((*key).to_owned(), Source::Flag))?;
            let value = def
                .parse(raw)
                .map_err(|m| invalid_raw(def, raw, Source::Flag, m))?;
            layers.set(def, value, Source::Flag)?;
        }
        let mut config: NodeConfig =
            layers
                .table
                .clone()
                .try_into()
                .map_err(|e| ConfigError::Syntax {
                    path: PathBuf::from("(merged configuration)"),
                    reason: e.message().to_owned(),
                })?;
        if let Err((key, reason)) = config.validate() {
            let def = keys::find(key);
            let value = layers
                .table
                .get(key.split('.').next().unwrap_or_default())
                .and_then(|s| s.get(key.split('.').nth(1).unwrap_or_default()));
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                shown: match (def, value) {
                    (Some(def), Some(v)) => def.show(v),
                    _ => "(unset)".to_owned(),
                },
                from: layers.sources.get(key).cloned().unwrap_or(Source::Default),
                reason,
            });
        }
        if config.node.id.is_none() {
            config.node.id =
                Some(host_name(env_hostname).unwrap_or_else(|| super::FALLBACK_NODE_ID.to_owned()));
        }
        Ok(config)
    }

    fn apply_file(layers: &mut Layers, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        // Only the message and position: toml's own report quotes the line, which may hold
        // a secret.
        let file: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            reason: match e.span() {
                Some(span) => {
                    let (line, column) = line_column(&text, span.start);
                    format!("line {line}, column {column}: {}", e.message().trim_end())
                }
                None => e.message().trim_end().to_owned(),
            },
        })?;
        let source = Source::File(path.to_owned());
        for (section, entries) in file {
            let Some(entries) = entries.as_table() else {
                return Err(unknown(section, source));
            };
            for (name, value) in entries {
                let key = format!("{section}.{name}");
                let def = keys::find(&key).ok_or_else(|| unknown(key, source.clone()))?;
                layers.set(def, Some(value.clone()), source.clone())?;
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

/// A string that could not be read as the key's kind; shown quoted unless secret.
fn invalid_raw(def: &KeyDef, raw: &str, source: Source, reason: String) -> ConfigError {
    invalid(
        def,
        Some(&toml::Value::String(raw.to_owned())),
        source,
        reason,
    )
}

#[cfg(test)]
mod tests;
