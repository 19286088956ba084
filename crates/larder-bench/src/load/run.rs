//! What every load run shares: its runtime, the checks of its options, the title of its
//! workload, and [`measure`], which opens the window, shows progress and sums up the lanes.
//!
//! Each RESP connection, and each gRPC call slot, runs its own loop and keeps its own
//! [`Recorder`]; the recorders are merged when the run ends, so the hot path shares nothing but
//! one relaxed counter for the progress display. Only replies that arrive inside the measured
//! window count; the server's CPU time is sampled from `/proc` at the window's edges.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cpu::{CpuUse, CpuWatch};
use super::report::{Progress, Recorder, Summary};
use super::window::Window;
use crate::args::LoadArgs;
use crate::error::{Error, Result, Usage};

/// One thread runs a current-thread runtime: no work stealing, no cross-thread wake-ups.
pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build().map_err(Error::Runtime)
}

/// Refuses option values that cannot make a run.
pub(crate) fn check(load: &LoadArgs, connections: usize, depth: usize) -> Result<()> {
    const AT_LEAST_1: &str = "at least 1";
    Usage::require(connections > 0, "--connections", AT_LEAST_1)?;
    let in_flight = "requests in flight per connection";
    Usage::require(depth > 0, in_flight, AT_LEAST_1)?;
    Usage::require(load.keys > 0, "--keys", AT_LEAST_1)?;
    Usage::require(load.threads > 0, "--threads", AT_LEAST_1)?;
    Usage::require(load.duration > 0.0, "--duration", "more than 0 seconds")
}

/// The workload part of a run's title.
pub(crate) fn describe(load: &LoadArgs) -> String {
    let pacing = match load.rate {
        Some(rate) => format!("open loop at {rate:.0} requests/s"),
        None => "closed loop".to_owned(),
    };
    format!(
        "{pacing}, {} keys, {}-byte values, {:.0}% reads, {} s after {} s warmup",
        load.keys,
        load.value_size,
        load.read_ratio * 100.0,
        load.duration,
        load.warmup
    )
}

/// Starts the lanes `spawn` makes with the window opening now, shows progress, waits out the
/// window and sums up.
pub(crate) async fn measure(
    load: &LoadArgs,
    cpu: CpuWatch,
    progress: Progress,
    label: &'static str,
    title: String,
    spawn: impl FnOnce(Window, &Arc<AtomicU64>) -> JoinSet<Recorder>,
) -> Result<Summary> {
    let window = Window::new(Instant::now(), load.warmup, load.duration);
    let completed = Arc::new(AtomicU64::new(0));
    let lanes = spawn(window, &completed);
    let shown = progress.spawn(label, window, completed);
    let (recorded, cpu) = collect(window, lanes, &cpu).await?;
    if let Some(shown) = shown {
        let _ = shown.await;
    }
    let measured = window.measured();
    Ok(Summary::new(title, recorded, measured, cpu, load.rate))
}

/// Waits out the run, samples CPU time at the window's edges and merges what the lanes recorded.
async fn collect(
    window: Window,
    mut lanes: JoinSet<Recorder>,
    cpu: &CpuWatch,
) -> Result<(Recorder, CpuUse)> {
    tokio::time::sleep_until(window.measure_from).await;
    let before = cpu.sample();
    tokio::time::sleep_until(window.end).await;
    let after = cpu.sample();
    let mut total = Recorder::new();
    while let Some(lane) = lanes.join_next().await {
        let lane = lane.map_err(|source| Error::Task {
            task: "a load task",
            source,
        })?;
        total.merge(lane);
    }
    Ok((total, before.until(&after)))
}
