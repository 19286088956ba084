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
use crate::serve::{serve, shutdown_on_signals};

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

/// The configurations of the nodes and the gateway `larder up` runs.
pub(crate) fn compose(config: &Config) -> anyhow::Result<(Vec<CacheConfig>, ApiConfig)> {
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
    for setting in [
        &mut api.tls_cert,
        &mut api.tls_key,
        &mut api.tls_client_ca,
        &mut api.cache_tls_ca,
        &mut api.cache_tls_cert,
        &mut api.cache_tls_key,
    ] {
        setting.clear();
    }
    let mut base = config.cache.clone();
    for setting in [
        &mut base.tls_cert,
        &mut base.tls_key,
        &mut base.tls_client_ca,
        &mut base.tls_ca,
    ] {
        setting.clear();
    }
    let count = config.up.nodes.max(1);
    let nodes = (0..count)
        .map(|i| node_config(&base, i, count))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((nodes, api))
}

/// Node `i` of `count`: alone, the configured node; in a cluster, the configured ports plus
/// `i` (RESP, gossip) or `2i` (gRPC and admin, which sit side by side), gossiping through
/// node 0.
fn node_config(base: &CacheConfig, i: u16, count: u16) -> anyhow::Result<CacheConfig> {
    let mut cache = base.clone();
    if count > 1 {
        let shift = |addr: &str, by: u16| -> anyhow::Result<String> {
            let (host, port) = addr
                .rsplit_once(':')
                .with_context(|| format!("{addr:?} is not host:port"))?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("{addr:?}: bad port"))?;
            if port == 0 {
                return Ok(addr.to_owned());
            }
            let port = port
                .checked_add(by)
                .with_context(|| format!("{addr:?}: no room for {count} nodes"))?;
            Ok(format!("{host}:{port}"))
        };
        cache.resp_addr = shift(&base.resp_addr, i)?;
        cache.grpc_addr = shift(&base.grpc_addr, 2 * i)?;
        cache.admin_addr = shift(&base.admin_addr, 2 * i)?;
        cache.cluster.enabled = true;
        cache.cluster.addr = shift(&base.cluster.addr, i)?;
        if cache.cluster.seeds.is_empty() {
            cache.cluster.seeds = vec![base.cluster.addr.clone()];
        }
        // Node i is always node i, restart after restart.
        if base.cluster.node_id.is_empty() {
            cache.cluster.node_id = format!("node-{i}");
        }
    }
    cache.validate().context("invalid [cache] configuration")?;
    Ok(cache)
}

/// Runs the nodes and the gateway until a signal stops them. Everything that can fail (the
/// listeners, the database) is set up before "larder is up" is printed.
pub(crate) fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let (caches, mut api) = compose(config)?;
    serve(&config.telemetry, "larder", || async move {
        let shutdown = shutdown_on_signals();
        let mut bound = Vec::with_capacity(caches.len());
        for cache in &caches {
            let listeners = Listeners::bind(cache)
                .await
                .map_err(crate::listen::cache_error)?;
            let addrs = listeners.local_addrs()?;
            bound.push((listeners, addrs));
        }
        api.cache_nodes = bound
            .iter()
            .map(|(_, [_, grpc, _])| grpc.to_string())
            .collect();
        let listener = larder_api::bind(&api.listen)
            .await
            .map_err(|e| crate::listen::explain(&e, &api.listen, crate::listen::API_LISTEN))?;
        let database = larder_cache::config::redact_url(&api.database);
        let collections: Vec<String> = api.collections.iter().map(|c| c.name.clone()).collect();
        let gateway = larder_api::Gateway::open(api, listener).await?;
        let http = gateway.local_addr()?;
        println!("larder is up");
        for name in &collections {
            println!("  api        http://{http}/v1/{name}");
        }
        println!("  docs       http://{http}/docs   (OpenAPI: http://{http}/openapi.json)");
        println!("  api ops    http://{http}/metrics  /healthz  /readyz");
        for (i, (_, [resp, grpc, admin])) in bound.iter().enumerate() {
            let name = if bound.len() > 1 {
                format!("node {i}")
            } else {
                "cache".into()
            };
            println!("  {name:<10} redis://{resp}  grpc http://{grpc}  ops http://{admin}/metrics");
        }
        if caches.len() > 1 {
            println!(
                "  cluster    gossip {} (larder cluster status --node {})",
                caches[0].cluster.addr, bound[0].1[2]
            );
        }
        println!("  database   {database}");
        let mut nodes = Vec::new();
        for (cache, (listeners, _)) in caches.into_iter().zip(bound) {
            nodes.push(tokio::spawn(larder_cache::run(
                cache,
                listeners,
                shutdown.clone(),
            )));
        }
        let gateway = gateway.serve(shutdown.clone()).await;
        shutdown.cancel();
        for node in nodes {
            node.await.context("cache node task")??;
        }
        gateway?;
        Ok(ExitCode::SUCCESS)
    })
}
