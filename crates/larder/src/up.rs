//! `larder up`: the whole stack in one process on the embedded defaults: a cache node and the
//! gateway talking to it over gRPC on loopback, exactly as separately started processes would
//! (the gateway loads what the node misses from its SQLite file and fills the node under a
//! lease), with a sample `products` collection unless the configuration declares others.

use std::process::ExitCode;

use anyhow::Context;
use larder_api::{ApiConfig, CollectionConfig};
use larder_cache::{CacheConfig, Listeners};
use serde_json::json;

use crate::config::Config;
use crate::serve::{init_tracing, runtime, shutdown_on_signals};

/// The sample collection `larder up` serves when none is configured.
fn sample_products() -> CollectionConfig {
    CollectionConfig {
        name: "products".into(),
        schema: Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "price": {"type": "number", "minimum": 0},
                "color": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["name", "price"],
            "additionalProperties": false
        })),
        filterable: vec!["color".into(), "name".into()],
        sortable: vec!["price".into(), "name".into()],
        ..CollectionConfig::default()
    }
}

/// The configurations of the node and the gateway `larder up` runs.
pub(crate) fn compose(config: &Config) -> anyhow::Result<(CacheConfig, ApiConfig)> {
    let data = &config.up.data;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let mut api = config.api.clone();
    if api.database.is_empty() {
        let path = data.join("larder.db");
        api.database = format!("sqlite://{}?mode=rwc", path.display());
    }
    if api.collections.is_empty() {
        api.collections.push(sample_products());
    }
    let cache = config.cache.clone();
    cache.validate().context("invalid [cache] configuration")?;
    Ok((cache, api))
}

/// Runs the node and the gateway until a signal stops them.
pub(crate) fn run(config: &Config) -> anyhow::Result<ExitCode> {
    init_tracing();
    let (cache, mut api) = compose(config)?;
    runtime()?.block_on(async move {
        let shutdown = shutdown_on_signals();
        let listeners = Listeners::bind(&cache).await?;
        let [resp, grpc, admin] = listeners.local_addrs()?;
        api.cache_nodes = vec![grpc.to_string()];
        let listener = tokio::net::TcpListener::bind(&api.listen)
            .await
            .with_context(|| format!("listening on {}", api.listen))?;
        let http = listener.local_addr()?;
        let node = tokio::spawn(larder_cache::run(cache, listeners, shutdown.clone()));
        println!("larder is up");
        println!("  api        http://{http}/v1/products   (docs: http://{http}/docs)");
        println!("  api ops    http://{http}/metrics  /healthz  /readyz");
        println!("  redis      redis://{resp}");
        println!("  grpc       http://{grpc}");
        println!("  cache ops  http://{admin}/metrics");
        println!("  database   {}", api.database);
        let gateway = larder_api::run(api, listener, shutdown.clone()).await;
        shutdown.cancel();
        let node = node.await.context("cache node task")?;
        gateway?;
        node?;
        Ok(ExitCode::SUCCESS)
    })
}
