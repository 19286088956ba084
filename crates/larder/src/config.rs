//! The effective configuration: defaults, then a TOML file, then `LARDER_*` environment
//! variables (`LARDER_<SECTION>_<FIELD>`, e.g. `LARDER_CACHE_MAX_MEMORY=1gb`), then flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use larder_api::ApiConfig;
use larder_cache::CacheConfig;
use serde::{Deserialize, Serialize};

use crate::cli::Command;

/// Default data directory of `larder up`.
pub(crate) const DEFAULT_DATA_DIR: &str = "./larder-data";

/// Everything `larder` can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The cache node.
    pub(crate) cache: CacheConfig,
    /// The API gateway.
    pub(crate) api: ApiConfig,
    /// `larder up`.
    pub(crate) up: UpConfig,
}

/// `larder up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UpConfig {
    /// Directory for the SQLite database and other state.
    pub(crate) data: PathBuf,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// Builds the effective configuration from the file, the environment and the command's flags.
pub(crate) fn load(file: Option<&Path>, command: &Option<Command>) -> anyhow::Result<Config> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => toml::Table::new(),
    };
    apply_env(&mut table, std::env::vars())?;
    let mut config: Config = table.try_into().context("invalid configuration")?;
    apply_flags(&mut config, command);
    validate(&config)?;
    Ok(config)
}

/// The configuration as TOML.
/// The configuration as TOML, with secrets replaced by a marker so the output can be shared.
pub(crate) fn render(config: &Config) -> anyhow::Result<String> {
    let mut shown = config.clone();
    for secret in [&mut shown.cache.password, &mut shown.cache.token] {
        if !secret.is_empty() {
            *secret = REDACTED.into();
        }
    }
    for origin in &mut shown.cache.origins {
        origin.url = larder_cache::config::redact_url(&origin.url);
    }
    Ok(toml::to_string(&shown)?)
}

/// What `--print-config` shows in place of a password or token.
const REDACTED: &str = "(set; not shown)";

fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = toml::Table::try_from(Config::default())?;
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("LARDER_") else {
            continue;
        };
        // `LARDER_TEST_*` belongs to the test suite (e.g. LARDER_TEST_POSTGRES_URL), not to
        // the binary's settings.
        if rest.starts_with("TEST_") {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let Some((section, field)) = rest.split_once('_') else {
            bail!("environment variable {name} does not name a setting (LARDER_<SECTION>_<FIELD>)");
        };
        if !["cache", "api", "up"].contains(&section) {
            bail!("environment variable {name}: unknown section {section:?}");
        }
        let value = typed(&defaults, section, field, &value)
            .with_context(|| format!("environment variable {name}"))?;
        let section = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(section) = section {
            section.insert(field.to_owned(), value);
        }
    }
    Ok(())
}

/// Reads an environment value as the type the setting has in the defaults, so numbers stay
/// numbers and lists split on commas; an unknown setting stays a string for serde to refuse.
fn typed(
    defaults: &toml::Table,
    section: &str,
    field: &str,
    value: &str,
) -> anyhow::Result<toml::Value> {
    let default = defaults
        .get(section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(field));
    Ok(match default {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            value
                .trim()
                .parse()
                .with_context(|| format!("{value:?} is not an integer"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            value
                .trim()
                .parse()
                .with_context(|| format!("{value:?} is not true or false"))?,
        ),
        Some(toml::Value::Array(_)) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        ),
        _ => toml::Value::String(value.into()),
    })
}

fn apply_flags(config: &mut Config, command: &Option<Command>) {
    fn set<T: Clone>(target: &mut T, flag: &Option<T>) {
        if let Some(value) = flag {
            *target = value.clone();
        }
    }
    match command {
        Some(Command::Cache(args)) => {
            set(&mut config.cache.grpc_addr, &args.grpc_addr);
            set(&mut config.cache.resp_addr, &args.resp_addr);
            set(&mut config.cache.admin_addr, &args.admin_addr);
            set(&mut config.cache.max_memory, &args.max_memory);
            set(&mut config.cache.policy, &args.policy);
        }
        Some(Command::Api(args)) => {
            set(&mut config.api.listen, &args.listen);
            set(&mut config.api.database, &args.database);
            set(&mut config.api.cache_nodes, &args.cache_nodes);
        }
        Some(Command::Up(args)) => set(&mut config.up.data, &args.data),
        Some(Command::Bench { .. } | Command::Probe(_)) | None => {}
    }
}

fn validate(config: &Config) -> anyhow::Result<()> {
    config
        .cache
        .validate()
        .context("invalid [cache] configuration")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let mut table: toml::Table = "[cache]\nmax_memory = \"1mb\"\npolicy = \"lru\"\n"
            .parse()
            .unwrap();
        let vars = [
            ("LARDER_CACHE_POLICY".to_owned(), "sieve".to_owned()),
            ("LARDER_API_CACHE_NODES".to_owned(), "a:1,b:2".to_owned()),
            ("LARDER_CACHE_MAX_CLIENTS".to_owned(), "7".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        apply_env(&mut table, vars.into_iter()).unwrap();
        let config: Config = table.try_into().unwrap();
        assert_eq!(config.cache.policy, "sieve");
        assert_eq!(config.cache.max_memory, "1mb");
        assert_eq!(config.api.cache_nodes, ["a:1", "b:2"]);
        assert_eq!(config.cache.max_clients, 7);
        let bad = [("LARDER_CACHE_MAX_CLIENTS".to_owned(), "many".to_owned())];
        assert!(apply_env(&mut toml::Table::new(), bad.into_iter()).is_err());
        let test_only = [(
            "LARDER_TEST_POSTGRES_URL".to_owned(),
            "postgres://x".to_owned(),
        )];
        assert!(apply_env(&mut toml::Table::new(), test_only.into_iter()).is_ok());
    }

    #[test]
    fn unknown_settings_are_refused() {
        let mut table = toml::Table::new();
        let vars = [("LARDER_CACHE_MAXMEMORY".to_owned(), "1".to_owned())];
        apply_env(&mut table, vars.into_iter()).unwrap();
        assert!(Config::deserialize(table).is_err());
        let bad_section = [("LARDER_NOPE_X".to_owned(), "1".to_owned())];
        assert!(apply_env(&mut toml::Table::new(), bad_section.into_iter()).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut config = Config::default();
        config.cache.password = "hunter2".into();
        config
            .cache
            .origins
            .push(larder_cache::config::OriginConfig {
                url: "postgres://app:s3cret@db/x".into(),
                ..Default::default()
            });
        let text = render(&config).unwrap();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains(REDACTED));
    }

    #[test]
    fn origins_are_read_from_the_file() {
        let table: toml::Table = "[[cache.origins]]\nname = \"docs\"\npattern = \"doc/{id}\"\n\
                                  kind = \"sql\"\nurl = \"sqlite://x.db\"\n\
                                  load = \"SELECT v FROM t WHERE k = :id\"\nfresh_ttl_ms = 5\n"
            .parse()
            .unwrap();
        let config: Config = table.try_into().unwrap();
        let origin = &config.cache.origins[0];
        assert_eq!((origin.name.as_str(), origin.fresh_ttl_ms), ("docs", 5));
        assert_eq!(
            origin.stale_if_error_ms,
            larder_cache::config::DEFAULT_STALE_IF_ERROR_MS
        );
        assert!(config.cache.validate().is_ok());
    }

    #[test]
    fn defaults_render_and_reparse() {
        let text = render(&Config::default()).unwrap();
        assert!(text.contains("resp_addr = \"127.0.0.1:6380\""));
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }
}
