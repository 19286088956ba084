//! Running servers from the binary: the tokio runtime, logs and traces, and one shutdown
//! token that SIGINT and SIGTERM cancel.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;
use larder_cache::{CacheConfig, Listeners};
use tokio_util::sync::CancellationToken;

use crate::telemetry::{self, TelemetryConfig};

/// Runs `server` on a new runtime with logs and traces started (`service` names the process
/// in exported spans); spans still buffered are exported before the runtime goes.
pub(crate) fn serve<F>(
    config: &TelemetryConfig,
    service: &str,
    server: impl FnOnce() -> F,
) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = runtime()?;
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::start(config, service)?
    };
    let result = runtime.block_on(server());
    drop(telemetry);
    result
}

/// Builds the runtime every server command runs on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// A token cancelled by the first SIGINT or SIGTERM.
pub(crate) fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => tokio::select! {
                    _ = interrupt => {},
                    _ = term.recv() => {},
                },
                Err(_) => {
                    let _ = interrupt.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = interrupt.await;
        cancel.cancel();
    });
    token
}

/// `larder cache`: runs one cache node until a signal stops it.
pub(crate) fn cache(config: CacheConfig, telemetry: &TelemetryConfig) -> anyhow::Result<ExitCode> {
    serve(telemetry, "larder-cache", || async move {
        let listeners = Listeners::bind(&config)
            .await
            .map_err(crate::listen::cache_error)?;
        let [resp, grpc, admin] = listeners.local_addrs()?;
        println!("larder cache node");
        println!("  redis protocol  redis://{resp}");
        println!("  grpc            http://{grpc}  (larder.cache.v1.Cache)");
        println!("  admin           http://{admin}/metrics  /healthz  /readyz");
        let shutdown = shutdown_on_signals();
        larder_cache::run(config, listeners, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `larder api`: runs the gateway alone against the configured database and cache nodes.
pub(crate) fn api(
    config: larder_api::ApiConfig,
    telemetry: &TelemetryConfig,
) -> anyhow::Result<ExitCode> {
    if config.database.is_empty() {
        anyhow::bail!("`larder api` needs --database (sqlite://PATH or postgres://…)");
    }
    serve(telemetry, "larder-api", || async move {
        let listener = larder_api::bind(&config.listen)
            .await
            .map_err(|e| crate::listen::explain(&e, &config.listen, crate::listen::API_LISTEN))?;
        let gateway = larder_api::Gateway::open(config, listener).await?;
        let addr = gateway.local_addr()?;
        let scheme = if gateway.tls() { "https" } else { "http" };
        println!("larder api gateway");
        println!(
            "  api   {scheme}://{addr}/v1/<collection>   (openapi: /openapi.json, docs: /docs)"
        );
        println!("  ops   {scheme}://{addr}/metrics  /healthz  /readyz");
        let shutdown = shutdown_on_signals();
        gateway.serve(shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
