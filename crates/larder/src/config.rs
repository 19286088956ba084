//! The effective configuration: defaults, then a TOML file, then `LARDER_*` environment
//! variables (`LARDER_<SECTION>_<FIELD>`, e.g. `LARDER_CACHE_MAX_MEMORY=1gb`), then flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use larder_store::Policy;
use serde::{Deserialize, Serialize};

use crate::cli::Command;

/// Default cache gRPC address.
pub(crate) const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7070";
/// Default cache Redis-protocol address.
pub(crate) const DEFAULT_RESP_ADDR: &str = "127.0.0.1:6380";
/// Default cache admin HTTP address.
pub(crate) const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:7071";
/// Default gateway address.
pub(crate) const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
/// Default cache memory bound.
pub(crate) const DEFAULT_MAX_MEMORY: &str = "256mb";
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

/// The cache node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CacheConfig {
    /// gRPC listen address.
    pub(crate) grpc_addr: String,
    /// Redis-protocol listen address.
    pub(crate) resp_addr: String,
    /// Admin HTTP listen address (`/metrics`, `/healthz`, `/readyz`).
    pub(crate) admin_addr: String,
    /// Memory bound: bytes, or a size with a suffix (`k`/`m`/`g` = 1000ⁿ, `kb`/`mb`/`gb` = 1024ⁿ).
    pub(crate) max_memory: String,
    /// Eviction policy: lru, sieve, s3fifo, tinylfu, adaptive.
    pub(crate) policy: String,
    /// Store shards (a power of two); 0 picks from the core count.
    pub(crate) shards: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            grpc_addr: DEFAULT_GRPC_ADDR.into(),
            resp_addr: DEFAULT_RESP_ADDR.into(),
            admin_addr: DEFAULT_ADMIN_ADDR.into(),
            max_memory: DEFAULT_MAX_MEMORY.into(),
            policy: Policy::default().name().into(),
            shards: 0,
        }
    }
}

/// The API gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ApiConfig {
    /// HTTP listen address.
    pub(crate) listen: String,
    /// Database URL (`sqlite://…` or `postgres://…`); empty means `sqlite://<data>/larder.db`.
    pub(crate) database: String,
    /// Cache node gRPC addresses; empty means an in-process cache.
    pub(crate) cache_nodes: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API_LISTEN.into(),
            database: String::new(),
            cache_nodes: Vec::new(),
        }
    }
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
pub(crate) fn render(config: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string(config)?)
}

fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("LARDER_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some((section, field)) = rest.split_once('_') else {
            bail!("environment variable {name} does not name a setting (LARDER_<SECTION>_<FIELD>)");
        };
        if !["cache", "api", "up"].contains(&section) {
            bail!("environment variable {name}: unknown section {section:?}");
        }
        let value = match field {
            "shards" => toml::Value::Integer(
                value
                    .parse()
                    .with_context(|| format!("{name} must be an integer"))?,
            ),
            "cache_nodes" => toml::Value::Array(
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.trim().into()))
                    .collect(),
            ),
            _ => toml::Value::String(value),
        };
        let section = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(section) = section {
            section.insert(field.to_owned(), value);
        }
    }
    Ok(())
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
        Some(Command::Bench { .. }) | None => {}
    }
}

fn validate(config: &Config) -> anyhow::Result<()> {
    parse_bytes(&config.cache.max_memory)
        .with_context(|| format!("cache.max_memory = {:?}", config.cache.max_memory))?;
    config
        .cache
        .policy
        .parse::<Policy>()
        .context("cache.policy")?;
    Ok(())
}

/// Parses a byte size the way Redis's configuration does: `1k` = 1000, `1kb` = 1024, and so on.
pub(crate) fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .with_context(|| format!("{text:?} is not a size"))?;
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        other => bail!("unknown size unit {other:?} (use b, k, kb, m, mb, g or gb)"),
    };
    number
        .checked_mul(scale)
        .with_context(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_redis() {
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1k").unwrap(), 1_000);
        assert_eq!(parse_bytes("1KB").unwrap(), 1_024);
        assert_eq!(parse_bytes("2gb").unwrap(), 2 << 30);
        assert!(parse_bytes("1tb").is_err());
        assert!(parse_bytes("mb").is_err());
        assert!(parse_bytes("99999999999gb").is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut table: toml::Table = "[cache]\nmax_memory = \"1mb\"\npolicy = \"lru\"\n"
            .parse()
            .unwrap();
        let vars = [
            ("LARDER_CACHE_POLICY".to_owned(), "sieve".to_owned()),
            ("LARDER_API_CACHE_NODES".to_owned(), "a:1,b:2".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        apply_env(&mut table, vars.into_iter()).unwrap();
        let config: Config = table.try_into().unwrap();
        assert_eq!(config.cache.policy, "sieve");
        assert_eq!(config.cache.max_memory, "1mb");
        assert_eq!(config.api.cache_nodes, ["a:1", "b:2"]);
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
    fn defaults_render_and_reparse() {
        let text = render(&Config::default()).unwrap();
        assert!(text.contains("resp_addr = \"127.0.0.1:6380\""));
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }
}
