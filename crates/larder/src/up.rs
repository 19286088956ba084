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
    if data.exists() && !data.is_dir() {
        anyhow::bail!(
            "--data {} names a file; give a directory for the stack's database (it is made if \
             it does not exist)",
            data.display()
        );
    }
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot make the data directory {}", data.display()))?;
    let mut api = config.api.clone();
    if api.database.is_empty() {
        let path = data.join("larder.db");
        api.database = format!("sqlite://{}?mode=rwc", path.display());
    }
    if api.collections.is_empty() {
        api.collections.push(sample_products());
    }
    // The stack talks to itself on loopback in plaintext: TLS settings are for separately run
    // processes.
    let mut cache = config.cache.clone();
    for setting in [
        &mut cache.tls_cert,
        &mut cache.tls_key,
        &mut cache.tls_client_ca,
    ] {
        setting.clear();
    }
    let api_tls = [&mut api.tls_cert, &mut api.tls_key, &mut api.tls_client_ca];
    for setting in api_tls {
        setting.clear();
    }
    for setting in [
        &mut api.cache_tls_ca,
        &mut api.cache_tls_cert,
        &mut api.cache_tls_key,
    ] {
        setting.clear();
    }
    cache.validate().context("invalid [cache] configuration")?;
    Ok((cache, api))
}

/// Runs the node and the gateway until a signal stops them. Everything that can fail (the
/// listeners, the database) is set up before "larder is up" is printed.
pub(crate) fn run(config: &Config) -> anyhow::Result<ExitCode> {
    init_tracing();
    let (cache, mut api) = compose(config)?;
    runtime()?.block_on(async move {
        let shutdown = shutdown_on_signals();
        let listeners = Listeners::bind(&cache)
            .await
            .map_err(crate::listen::cache_error)?;
        let [resp, grpc, admin] = listeners.local_addrs()?;
        api.cache_nodes = vec![grpc.to_string()];
        let listener = larder_api::bind(&api.listen)
            .await
            .map_err(|e| crate::listen::explain(&e, &api.listen, crate::listen::API_LISTEN))?;
        let database = larder_cache::config::redact_url(&api.database);
        let collections: Vec<String> = api.collections.iter().map(|c| c.name.clone()).collect();
        let gateway = larder_api::Gateway::open(api, listener).await?;
        let http = gateway.local_addr()?;
        let node = tokio::spawn(larder_cache::run(cache, listeners, shutdown.clone()));
        println!("larder is up");
        for name in &collections {
            println!("  api        http://{http}/v1/{name}");
        }
        println!("  docs       http://{http}/docs   (OpenAPI: http://{http}/openapi.json)");
        println!("  api ops    http://{http}/metrics  /healthz  /readyz");
        println!("  redis      redis://{resp}");
        println!("  grpc       http://{grpc}");
        println!("  cache ops  http://{admin}/metrics");
        println!("  database   {database}");
        let gateway = gateway.serve(shutdown.clone()).await;
        shutdown.cancel();
        let node = node.await.context("cache node task")?;
        gateway?;
        node?;
        Ok(ExitCode::SUCCESS)
    })
}
