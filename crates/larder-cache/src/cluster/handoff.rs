//! Moving partitions between nodes when the table changes, in the background.
//!
//! When a new table gives this node a partition that a live member owned before, this node
//! pulls the partition's entries from it (`Cluster.Pull`), while already serving the
//! partition: a miss on a key not pulled yet is sent to the previous owner (RESP `-ASK`, gRPC
//! forwarded), and a key a client writes meanwhile keeps the client's value. The previous
//! owner sends at a bounded rate, so neither node's traffic waits on the move. A partition
//! this node loses is kept for `keep_lost_ms` for its new owner to pull, then dropped, so a
//! partition that comes back later never brings stale entries with it.
//!
//! Client-side caching: the keys subscribers read here of a partition this node loses will
//! change on another node, which does not know who read them. So a node that loses a
//! partition tells every subscriber to drop every copy (a flush) as it installs the table,
//! and answers a pull's last batch only once its subscribers applied that (or their leases
//! lapsed), as a write that awaits invalidation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use larder_cluster::{Member, PARTITIONS, Status, Table, key_slot, partition_of};
use larder_proto::grpc::cache::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ClusterView;
use crate::node::Node;

/// Entries in one `PullReply`.
pub(crate) const BATCH: usize = 256;
/// Keys a scan asks the store for at a time.
const SCAN_PAGE: usize = 1_024;
/// How often lost partitions are checked for dropping.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Takes `table` as the new table: works out which partitions this node gains (and from
/// whom) and loses, installs it, and starts the pulls.
pub(crate) fn apply(view: &Arc<ClusterView>, node: &Arc<Node>, table: Table) {
    let old = view.snapshot();
    if old.table.epoch() == table.epoch() {
        return;
    }
    let me = view.me().id.clone();
    let table = Arc::new(table);
    let mut moving: HashMap<u16, Member> = HashMap::new();
    let mut regained = Vec::new();
    let mut loses = false;
    {
        let mut lost = view.lost.lock();
        for partition in 0..PARTITIONS {
            let before = old.table.owner(partition);
            let now = table.owner(partition);
            let mine_before = before.is_some_and(|m| m.id == me);
            let mine_now = now.is_some_and(|m| m.id == me);
            if mine_now && !mine_before {
                if lost.remove(&partition).is_some() {
                    regained.push(partition);
                }
                view.handed.lock().remove(&partition);
                // Pull from the previous owner while it is still a member (ready or draining);
                // when this node had no owner to go by (it just joined), from the member that
                // owns the partition when this node is left out: the next in its ranking.
                let from = match before {
                    Some(m) => table.member(&m.id),
                    None => table.ranked(partition).get(1).copied(),
                };
                if let Some(from) = from.filter(|m| m.id != me) {
                    moving.insert(partition, from.clone());
                }
            } else if mine_before && !mine_now {
                // Its new owner may have pulled it already (it can hear of the change first):
                // a mark of that stays, so the entries go at the next sweep.
                lost.insert(partition, Instant::now());
                loses = true;
            }
        }
    }
    // Partitions still moving in from a member that is still there keep moving.
    for (&partition, from) in &old.moving {
        let still_mine = table.owner(partition).is_some_and(|m| m.id == me);
        if still_mine && table.member(&from.id).is_some() {
            moving.entry(partition).or_insert_with(|| from.clone());
        }
    }
    let fresh: Vec<(u16, Member)> = moving
        .iter()
        .filter(|(p, _)| !old.moving.contains_key(p))
        .map(|(&p, m)| (p, m.clone()))
        .collect();
    tracing::info!(
        epoch = table.epoch(),
        members = table.members().len(),
        gained = fresh.len(),
        "cluster table changed"
    );
    view.install(table, moving);
    if loses {
        // Writes of those keys go to their new owners from now on.
        node.tracking.flushed();
    }
    if !regained.is_empty() {
        // What this node kept of a partition it owned earlier may be stale: drop it first.
        drop_partitions(node, &regained.into_iter().collect());
    }
    let mut by_source: HashMap<String, (Member, Vec<u16>)> = HashMap::new();
    for (partition, from) in fresh {
        by_source
            .entry(from.id.clone())
            .or_insert_with(|| (from, Vec::new()))
            .1
            .push(partition);
    }
    for (_, (from, partitions)) in by_source {
        tokio::spawn(pull(view.clone(), node.clone(), from, partitions));
    }
}

/// Pulls `partitions` from `from` and stores what arrives, unless clients wrote the key.
async fn pull(view: Arc<ClusterView>, node: Arc<Node>, from: Member, partitions: Vec<u16>) {
    let started = Instant::now();
    let request = pb::PullRequest {
        partitions: partitions.iter().map(|&p| u32::from(p)).collect(),
        from_id: view.me().id.clone(),
    };
    let result = async {
        let mut client = view.peers.cluster(&from.grpc)?;
        let mut stream = client
            .pull(view.peers.internal(request))
            .await?
            .into_inner();
        let mut adopted = 0u64;
        while let Some(reply) = stream.message().await? {
            let now = node.now_ms();
            for entry in reply.entries {
                let expires_at = (entry.ttl_ms > 0).then(|| now.saturating_add(entry.ttl_ms));
                let stored = view.unless_touched(&entry.key, || {
                    node.adopt(&entry.key, &entry.value, entry.version, expires_at);
                });
                adopted += u64::from(stored);
            }
            view.metrics.handoff_entries.fetch_add(adopted, Relaxed);
            adopted = 0;
            let done: Vec<u16> = reply
                .done
                .iter()
                .filter_map(|&p| u16::try_from(p).ok())
                .collect();
            if !done.is_empty() {
                view.finish_moves(&done);
            }
        }
        Ok::<(), tonic::Status>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(
            from = %from.id,
            partitions = partitions.len(),
            ms = started.elapsed().as_millis() as u64,
            "partitions taken over"
        ),
        Err(status) => tracing::warn!(
            from = %from.id,
            partitions = partitions.len(),
            error = %status.message(),
            "pulling partitions failed; their entries load again on demand"
        ),
    }
    // Whatever did not arrive is not coming: the partitions are served as they are.
    view.finish_moves(&partitions);
}

/// Sends the entries of `partitions` held here, in batches, at most `rate` entries per
/// second, then marks them handed off.
pub(crate) async fn send(
    view: Arc<ClusterView>,
    node: Arc<Node>,
    partitions: Vec<u16>,
    rate: u64,
    out: mpsc::Sender<Result<pb::PullReply, tonic::Status>>,
) {
    let wanted: HashSet<u16> = partitions.iter().copied().collect();
    let started = tokio::time::Instant::now();
    let (mut cursor, mut sent, mut batch) = (0u64, 0u64, Vec::with_capacity(BATCH));
    loop {
        let (next, keys) = node.store.scan(cursor, SCAN_PAGE);
        let now = node.now_ms();
        for key in keys {
            if !wanted.contains(&partition_of(key_slot(&key))) {
                continue;
            }
            let found = node.store.peek_with(&key, |e| {
                let ttl_ms = e.expires_at.map_or(0, |at| at.saturating_sub(now).max(1));
                (bytes::Bytes::copy_from_slice(e.value), e.version, ttl_ms)
            });
            let Some((value, version, ttl_ms)) = found else {
                continue;
            };
            batch.push(pb::PulledEntry {
                key: bytes::Bytes::from(key),
                value,
                version,
                ttl_ms,
            });
            if batch.len() == BATCH {
                sent += BATCH as u64;
                let reply = pb::PullReply {
                    entries: std::mem::take(&mut batch),
                    done: Vec::new(),
                };
                if out.send(Ok(reply)).await.is_err() {
                    return;
                }
                pace(started, sent, rate).await;
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // The handoff completes only once no subscriber keeps a copy this node tracked.
    node.tracking.barrier().wait().await;
    let reply = pb::PullReply {
        entries: batch,
        done: partitions.iter().map(|&p| u32::from(p)).collect(),
    };
    if out.send(Ok(reply)).await.is_ok() {
        view.handed.lock().extend(partitions);
    }
}

/// Sleeps as long as sending `sent` entries since `started` ran ahead of `rate` per second.
async fn pace(started: tokio::time::Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
    tokio::time::sleep_until(due).await;
}

/// Deletes every entry of `partitions` held here.
fn drop_partitions(node: &Node, partitions: &HashSet<u16>) {
    if partitions.is_empty() {
        return;
    }
    let mut cursor = 0;
    let mut dropped = 0u64;
    loop {
        let (next, keys) = node.store.scan(cursor, SCAN_PAGE);
        for key in keys {
            if partitions.contains(&partition_of(key_slot(&key))) && node.store.delete(&key) {
                dropped += 1;
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    tracing::debug!(
        partitions = partitions.len(),
        dropped,
        "dropped lost partitions"
    );
}

/// Drops, every second, the entries of partitions lost longer ago than `keep_lost_ms` (or
/// handed off in full), until `shutdown`.
pub(crate) async fn sweep_lost(
    view: Arc<ClusterView>,
    node: Arc<Node>,
    shutdown: CancellationToken,
) {
    let keep = Duration::from_millis(view.config.keep_lost_ms);
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        sweep(&view, &node, keep);
    }
}

/// Drops the entries of partitions lost longer ago than `keep` or handed off in full.
pub(crate) fn sweep(view: &ClusterView, node: &Node, keep: Duration) {
    let due: HashSet<u16> = {
        let mut lost = view.lost.lock();
        let handed = view.handed.lock();
        let due: HashSet<u16> = lost
            .iter()
            .filter(|(p, at)| at.elapsed() >= keep || handed.contains(p))
            .map(|(&p, _)| p)
            .collect();
        lost.retain(|p, _| !due.contains(p));
        due
    };
    drop_partitions(node, &due);
}

/// Draining: waits until every partition this node owned in its last table as a ready member
/// has been pulled by its new owner (or no other ready member is left to take it), or
/// `deadline` passes.
pub(crate) async fn drained(view: &ClusterView, owned: Vec<u16>, deadline: Duration) -> bool {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut tables = view.tables();
    loop {
        let table = tables.borrow_and_update().clone();
        let nobody_else = !table
            .members()
            .iter()
            .any(|m| m.id != view.me().id && m.status == Status::Ready);
        let pending = {
            let handed = view.handed.lock();
            owned.iter().filter(|p| !handed.contains(p)).count()
        };
        if pending == 0 || nobody_else {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep_until(give_up) => return false,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = tables.changed() => {}
        }
    }
}
