//! The effective configuration: defaults, then a TOML file, then `LARDER_*` environment
//! variables (`LARDER_<SECTION>_<FIELD>`, e.g. `LARDER_CACHE_MAX_MEMORY=1gb`), then flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use larder_api::ApiConfig;
use larder_cache::CacheConfig;
use serde::{Deserialize, Serialize};

use crate::cli::Command;
use crate::telemetry::{LogFormat, TelemetryConfig};

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
    /// Logs and traces.
    pub(crate) telemetry: TelemetryConfig,
}

/// `larder up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UpConfig {
    /// Directory for the SQLite database and other state.
    pub(crate) data: PathBuf,
    /// Cache nodes to run; more than one form a cluster, each node on the next ports.
    pub(crate) nodes: u16,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from(DEFAULT_DATA_DIR),
            nodes: 1,
        }
    }
}

/// Builds the effective configuration from the file, the environment and the command's flags.
pub(crate) fn load(
    file: Option<&Path>,
    command: &Option<Command>,
    log_format: Option<LogFormat>,
) -> anyhow::Result<Config> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => toml::Table::new(),
    };
    apply_otel_env(&mut table, std::env::vars())?;
    apply_env(&mut table, std::env::vars())?;
    let mut config: Config = table.try_into().context("invalid configuration")?;
    apply_flags(&mut config, command);
    if let Some(format) = log_format {
        config.telemetry.log_format = format;
    }
    validate(&config)?;
    Ok(config)
}

/// The configuration as TOML, with secrets replaced by a marker so the output can be shared:
/// passwords and tokens, and the password of every database URL.
pub(crate) fn render(config: &Config) -> anyhow::Result<String> {
    let mut shown = config.clone();
    let secrets = [
        &mut shown.cache.password,
        &mut shown.cache.token,
        &mut shown.api.token,
        &mut shown.api.cache_token,
    ];
    for secret in secrets {
        if !secret.is_empty() {
            *secret = REDACTED.into();
        }
    }
    for origin in &mut shown.cache.origins {
        origin.url = larder_cache::config::redact_url(&origin.url);
    }
    shown.api.database = larder_cache::config::redact_url(&shown.api.database);
    Ok(toml::to_string(&shown)?)
}

/// What `--print-config` shows in place of a password or token.
const REDACTED: &str = "(set; not shown)";

/// The standard `OTEL_*` variables, below `LARDER_TELEMETRY_*` (applied after them).
fn apply_otel_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let settings = crate::telemetry::otel_env(vars)?;
    if settings.is_empty() {
        return Ok(());
    }
    let section = table
        .entry("telemetry")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section) = section else {
        bail!("telemetry is not a section");
    };
    for (name, value) in settings {
        section.insert(name.to_owned(), value);
    }
    Ok(())
}

fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = toml::Table::try_from(Config::default())?;
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("LARDER_") else {
            continue;
        };
        // Only `LARDER_CACHE_*`, `LARDER_API_*`, `LARDER_UP_*` and `LARDER_TELEMETRY_*` are settings, and a typo in
        // them is refused below. Other `LARDER_*` names belong to whatever runs the binary (the
        // test suite's LARDER_TEST_POSTGRES_URL, the scripts' LARDER_BIN, a deploy's
        // LARDER_COMMIT) and are none of its business.
        let rest = rest.to_ascii_lowercase();
        let Some((section, field)) = rest
            .split_once('_')
            .filter(|(section, _)| ["cache", "api", "up", "telemetry"].contains(section))
        else {
            continue;
        };
        // A field of a nested table (`LARDER_CACHE_CLUSTER_SEEDS`: `[cache.cluster] seeds`).
        let nested = defaults
            .get(section)
            .and_then(|s| s.as_table())
            .and_then(|s| {
                s.iter().find_map(|(sub, v)| {
                    let rest = field.strip_prefix(sub.as_str())?.strip_prefix('_')?;
                    v.is_table().then(|| (sub.clone(), rest.to_owned()))
                })
            });
        let (defaults_at, path): (&toml::Table, Vec<String>) = match &nested {
            Some((sub, rest)) => (
                defaults
                    .get(section)
                    .and_then(|s| s.as_table())
                    .unwrap_or(&defaults),
                vec![section.to_owned(), sub.clone(), rest.clone()],
            ),
            None => (&defaults, vec![section.to_owned(), field.to_owned()]),
        };
        let (owner, leaf) = (&path[path.len() - 2], &path[path.len() - 1]);
        let value = typed(defaults_at, owner, leaf, &value)
            .with_context(|| format!("environment variable {name}"))?;
        let mut at = &mut *table;
        for step in &path[..path.len() - 1] {
            let entry = at
                .entry(step.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = entry else {
                bail!("environment variable {name}: {step} is not a section");
            };
            at = inner;
        }
        at.insert(leaf.clone(), value);
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
        Some(toml::Value::Float(_)) => toml::Value::Float(
            value
                .trim()
                .parse()
                .with_context(|| format!("{value:?} is not a number"))?,
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
            set(&mut config.cache.tls_cert, &args.tls_cert);
            set(&mut config.cache.tls_key, &args.tls_key);
            let cluster = &mut config.cache.cluster;
            set(&mut cluster.addr, &args.cluster_addr);
            set(&mut cluster.seeds, &args.seeds);
            set(&mut cluster.node_id, &args.node_id);
            set(&mut cluster.advertise_host, &args.advertise_host);
            cluster.enabled |= args.cluster || args.cluster_addr.is_some() || args.seeds.is_some();
        }
        Some(Command::Api(args)) => {
            set(&mut config.api.listen, &args.listen);
            set(&mut config.api.database, &args.database);
            set(&mut config.api.cache_nodes, &args.cache_nodes);
            set(&mut config.api.tls_cert, &args.tls_cert);
            set(&mut config.api.tls_key, &args.tls_key);
        }
        Some(Command::Up(args)) => {
            set(&mut config.up.data, &args.data);
            set(&mut config.api.listen, &args.listen);
            set(&mut config.cache.resp_addr, &args.resp_addr);
            set(&mut config.cache.grpc_addr, &args.grpc_addr);
            set(&mut config.cache.admin_addr, &args.admin_addr);
            set(&mut config.up.nodes, &args.nodes);
        }
        Some(Command::Bench { .. } | Command::Probe(_) | Command::Cluster { .. }) | None => {}
    }
}

fn validate(config: &Config) -> anyhow::Result<()> {
    config
        .cache
        .validate()
        .context("invalid [cache] configuration")?;
    config
        .telemetry
        .validate()
        .context("invalid [telemetry] configuration")?;
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
    fn other_larder_variables_are_left_to_whoever_set_them() {
        let mut table = toml::Table::new();
        let vars = [
            ("LARDER_COMMIT".to_owned(), "3d5eabf".to_owned()),
            ("LARDER_BIN".to_owned(), "/usr/bin/larder".to_owned()),
            ("LARDER_DEPLOY_ENV".to_owned(), "staging".to_owned()),
        ];
        apply_env(&mut table, vars.into_iter()).unwrap();
        let config: Config = table.try_into().unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn telemetry_comes_from_otel_variables_then_larder_ones() {
        let mut table: toml::Table = "[telemetry]\nsample_ratio = 0.5\n".parse().unwrap();
        let otel = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                "http://127.0.0.1:4317".to_owned(),
            ),
            ("OTEL_TRACES_SAMPLER".to_owned(), "traceidratio".to_owned()),
            ("OTEL_TRACES_SAMPLER_ARG".to_owned(), "0.25".to_owned()),
        ];
        apply_otel_env(&mut table, otel.into_iter()).unwrap();
        let larder = [
            (
                "LARDER_TELEMETRY_SAMPLE_RATIO".to_owned(),
                "0.01".to_owned(),
            ),
            ("LARDER_TELEMETRY_LOG_FORMAT".to_owned(), "json".to_owned()),
        ];
        apply_env(&mut table, larder.into_iter()).unwrap();
        let config: Config = table.try_into().unwrap();
        let telemetry = &config.telemetry;
        assert_eq!(telemetry.otlp_endpoint, "http://127.0.0.1:4317");
        assert_eq!(telemetry.sample_ratio, 0.01);
        assert!(!telemetry.parent_based);
        assert_eq!(telemetry.log_format, LogFormat::Json);
        let bad = [("LARDER_TELEMETRY_SAMPLE_RATIO".to_owned(), "x".to_owned())];
        assert!(apply_env(&mut toml::Table::new(), bad.into_iter()).is_err());
    }

    #[test]
    fn unknown_settings_are_refused() {
        let mut table = toml::Table::new();
        let vars = [("LARDER_CACHE_MAXMEMORY".to_owned(), "1".to_owned())];
        apply_env(&mut table, vars.into_iter()).unwrap();
        assert!(Config::deserialize(table).is_err());
        let mut table = toml::Table::new();
        let typo = [("LARDER_API_LISTN".to_owned(), "0.0.0.0:1".to_owned())];
        apply_env(&mut table, typo.into_iter()).unwrap();
        assert!(Config::deserialize(table).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut config = Config::default();
        config.cache.password = "hunter2".into();
        config.api.token = "api-t0ken".into();
        config.api.cache_token = "node-t0ken".into();
        config.api.database = "postgres://app:pg-pa55@db:5432/larder?sslmode=disable".into();
        config
            .cache
            .origins
            .push(larder_cache::config::OriginConfig {
                url: "postgres://app:s3cret@db/x".into(),
                ..Default::default()
            });
        let text = render(&config).unwrap();
        for secret in ["hunter2", "s3cret", "api-t0ken", "node-t0ken", "pg-pa55"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        assert!(text.contains("postgres://app:***@db:5432/larder"), "{text}");
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
