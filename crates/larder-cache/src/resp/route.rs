//! Redis Cluster routing for a clustered node: before a command with keys runs, its keys must
//! share one hash slot (`-CROSSSLOT` otherwise) that this node serves. A slot another member
//! owns is answered `-MOVED <slot> <host:port>`, as Redis Cluster does, so cluster-aware
//! clients learn the owner and go there themselves. While a partition is being taken over, a
//! read of a key this node does not hold yet is answered `-ASK <slot> <previous owner>`: the
//! client asks there once (`ASKING`, then the command). With no ready member, `-CLUSTERDOWN`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use larder_cluster::key_slot;

use super::ctx::{Command, Ctx};
use crate::cluster::{ClusterView, Route};

/// The error to send instead of running the command, if there is one.
pub(crate) fn check(
    ctx: &mut Ctx<'_>,
    view: &ClusterView,
    command: &Command,
    argv: &[&[u8]],
) -> Option<String> {
    let mut keys = key_positions(command.keys, argv.len()).map(|i| argv[i]);
    let first = keys.next()?;
    let slot = key_slot(first);
    if keys.any(|key| key_slot(key) != slot) {
        view.metrics.redirects[2].fetch_add(1, Relaxed);
        return Some("CROSSSLOT Keys in request don't hash to the same slot".to_owned());
    }
    if std::mem::take(&mut ctx.session.asking) {
        return None;
    }
    let snapshot = snapshot(&mut ctx.session.route, view);
    match snapshot.route(slot) {
        Route::Local => {
            let from = snapshot.moving_from(slot)?;
            let reads = command.flags.contains(&"readonly");
            if reads && !ctx.node.contains(first) && !view.touched(first) {
                view.metrics.redirects[1].fetch_add(1, Relaxed);
                return Some(format!("ASK {slot} {}", from.resp));
            }
            None
        }
        Route::Moved(owner) => {
            view.metrics.redirects[0].fetch_add(1, Relaxed);
            Some(format!("MOVED {slot} {}", owner.resp))
        }
        Route::Down => {
            view.metrics.redirects[3].fetch_add(1, Relaxed);
            Some("CLUSTERDOWN Hash slot not served".to_owned())
        }
    }
}

/// The connection's snapshot, taken again only when the view's version moved: a command
/// routes by a borrowed one, so the shared snapshot's count is not touched per command.
fn snapshot<'s>(
    route: &'s mut Option<(u64, Arc<crate::cluster::Snapshot>)>,
    view: &ClusterView,
) -> &'s crate::cluster::Snapshot {
    let version = view.version();
    if matches!(route, Some((seen, _)) if *seen != version) {
        *route = None;
    }
    &route.get_or_insert_with(|| (version, view.snapshot())).1
}

/// The argument positions holding keys, for a command line of `argc` words (Redis's first,
/// last, step; a negative last counts from the end).
pub(crate) fn key_positions(
    (first, last, step): (i32, i32, i32),
    argc: usize,
) -> impl Iterator<Item = usize> {
    let (first, step) = (
        usize::try_from(first).unwrap_or(0),
        usize::try_from(step).unwrap_or(0),
    );
    let last = usize::try_from(last)
        .unwrap_or_else(|_| argc.saturating_sub(last.unsigned_abs() as usize))
        .min(argc.saturating_sub(1));
    let valid = first > 0 && step > 0 && first <= last;
    (first..=last).step_by(step.max(1)).filter(move |_| valid)
}

#[cfg(test)]
mod tests {
    use super::key_positions;

    #[test]
    fn key_positions_follow_redis_specs() {
        let at = |spec, argc| key_positions(spec, argc).collect::<Vec<_>>();
        assert_eq!(at((1, 1, 1), 2), [1]);
        assert_eq!(at((1, -1, 1), 4), [1, 2, 3]);
        assert_eq!(at((1, -1, 2), 5), [1, 3]);
        assert!(at((0, 0, 0), 3).is_empty());
        assert!(at((1, -1, 1), 1).is_empty());
        assert!(at((1, 1, 1), 1).is_empty());
    }
}
