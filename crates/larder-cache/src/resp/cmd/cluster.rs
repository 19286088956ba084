//! Cluster commands: CLUSTER (INFO, MYID, SLOTS, SHARDS, NODES, KEYSLOT, COUNTKEYSINSLOT,
//! GETKEYSINSLOT), ASKING, READONLY and READWRITE, in Redis Cluster's shapes, so cluster-aware
//! clients (`redis-cli -c`, redis-py's `RedisCluster`) find the owner of every slot. A node that
//! is not clustered answers them as Redis does without cluster support.

use std::fmt::Write as _;

use larder_cluster::{Member, SLOTS, Status, key_slot};
use larder_proto::ErrorCode;

use crate::cluster::{ClusterView, hex_id};
use crate::resp::cmd::container::{HELP, dispatch};
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, spec};

const STALE: &[&str] = &["loading", "stale"];
const FAST: &[&str] = &["fast", "loading", "stale"];

/// The cluster family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "cluster",
        -2,
        &[],
        (0, 0, 0),
        "Describes the cluster: slots, shards, nodes, this node's id.",
        "3.0.0",
        cluster,
    )
    .with_subcommands(SUBCOMMANDS),
    spec(
        "asking",
        1,
        FAST,
        (0, 0, 0),
        "Lets the next command run here though another node owns its slot (after -ASK).",
        "3.0.0",
        asking,
    ),
    spec(
        "readonly",
        1,
        FAST,
        (0, 0, 0),
        "Allows reads from replicas on this connection (larder has none yet: a no-op).",
        "3.0.0",
        ok_in_cluster,
    ),
    spec(
        "readwrite",
        1,
        FAST,
        (0, 0, 0),
        "Ends READONLY on this connection.",
        "3.0.0",
        ok_in_cluster,
    ),
];

static SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "info",
        2,
        STALE,
        (0, 0, 0),
        "Describes the cluster's state.",
        "3.0.0",
        info,
    ),
    spec(
        "myid",
        2,
        STALE,
        (0, 0, 0),
        "Replies this node's id.",
        "3.0.0",
        myid,
    ),
    spec(
        "slots",
        2,
        STALE,
        (0, 0, 0),
        "Maps slot ranges to the nodes that serve them.",
        "3.0.0",
        slots,
    ),
    spec(
        "shards",
        2,
        STALE,
        (0, 0, 0),
        "Describes each shard: its slot ranges and its nodes.",
        "7.0.0",
        shards,
    ),
    spec(
        "nodes",
        2,
        STALE,
        (0, 0, 0),
        "Describes every node in Redis's text format.",
        "3.0.0",
        nodes,
    ),
    spec(
        "keyslot",
        3,
        STALE,
        (0, 0, 0),
        "Replies the hash slot of a key.",
        "3.0.0",
        keyslot,
    ),
    spec(
        "countkeysinslot",
        3,
        STALE,
        (0, 0, 0),
        "Replies how many keys this node holds in a slot.",
        "3.0.0",
        countkeysinslot,
    ),
    spec(
        "getkeysinslot",
        4,
        STALE,
        (0, 0, 0),
        "Replies up to a number of keys this node holds in a slot.",
        "3.0.0",
        getkeysinslot,
    ),
    HELP,
];

/// The node's cluster view, or Redis's refusal without cluster support.
fn view<'a>(ctx: &Ctx<'a>) -> Result<&'a ClusterView, CmdError> {
    let node: &'a crate::node::Node = ctx.node;
    node.cluster.as_deref().ok_or_else(|| {
        CmdError::new(
            ErrorCode::InvalidArgument,
            "This instance has cluster support disabled",
        )
    })
}

fn cluster(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    view(ctx)?;
    dispatch(ctx, argv)
}

fn asking(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    view(ctx)?;
    ctx.session.asking = true;
    ctx.ok();
    Ok(())
}

fn ok_in_cluster(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    view(ctx)?;
    ctx.ok();
    Ok(())
}

/// `host` and `port` of a `host:port` address.
fn host_port(addr: &str) -> (&str, i64) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.trim_matches(['[', ']']), port.parse().unwrap_or(0)),
        None => (addr, 0),
    }
}

fn info(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let view = view(ctx)?;
    let snapshot = view.snapshot();
    let table = &snapshot.table;
    let assigned: usize = table
        .slot_ranges()
        .iter()
        .map(|&(first, last, _)| usize::from(last - first) + 1)
        .sum();
    let serving = table
        .members()
        .iter()
        .filter(|m| !table.partitions_of(&m.id).is_empty())
        .count();
    let state = if assigned == usize::from(SLOTS) {
        "ok"
    } else {
        "fail"
    };
    let epoch = view.version();
    let mut text = String::new();
    for (name, value) in [
        ("cluster_state", state.to_owned()),
        ("cluster_slots_assigned", assigned.to_string()),
        ("cluster_slots_ok", assigned.to_string()),
        ("cluster_slots_pfail", "0".into()),
        ("cluster_slots_fail", "0".into()),
        ("cluster_known_nodes", table.members().len().to_string()),
        ("cluster_size", serving.to_string()),
        ("cluster_current_epoch", epoch.to_string()),
        ("cluster_my_epoch", epoch.to_string()),
        ("cluster_stats_messages_sent", "0".into()),
        ("cluster_stats_messages_received", "0".into()),
        ("total_cluster_links_buffer_limit_exceeded", "0".into()),
    ] {
        let _ = write!(text, "{name}:{value}\r\n");
    }
    ctx.verbatim(text.as_bytes());
    Ok(())
}

fn myid(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let id = hex_id(&view(ctx)?.me().id);
    ctx.bulk(id.as_bytes());
    Ok(())
}

/// One node as `CLUSTER SLOTS` lists it: host, port, id.
fn write_node(ctx: &mut Ctx<'_>, member: &Member) {
    let (host, port) = host_port(&member.resp);
    ctx.array(3);
    ctx.bulk(host.as_bytes());
    ctx.int(port);
    ctx.bulk(hex_id(&member.id).as_bytes());
}

fn slots(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let snapshot = view(ctx)?.snapshot();
    let ranges = snapshot.table.slot_ranges();
    ctx.array(ranges.len());
    for (first, last, owner) in ranges {
        ctx.array(3);
        ctx.int(i64::from(first));
        ctx.int(i64::from(last));
        write_node(ctx, owner);
    }
    Ok(())
}

fn shards(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let snapshot = view(ctx)?.snapshot();
    let table = &snapshot.table;
    let ranges = table.slot_ranges();
    ctx.array(table.members().len());
    for member in table.members() {
        let own: Vec<(u16, u16)> = ranges
            .iter()
            .filter(|r| r.2.id == member.id)
            .map(|r| (r.0, r.1))
            .collect();
        ctx.map(2);
        ctx.bulk(b"slots");
        ctx.array(own.len() * 2);
        for (first, last) in own {
            ctx.int(i64::from(first));
            ctx.int(i64::from(last));
        }
        ctx.bulk(b"nodes");
        ctx.array(1);
        let (host, port) = host_port(&member.resp);
        let health = if member.status == Status::Ready {
            "online"
        } else {
            "loading"
        };
        ctx.map(7);
        for (field, value) in [("id", hex_id(&member.id)), ("ip", host.to_owned())] {
            ctx.bulk(field.as_bytes());
            ctx.bulk(value.as_bytes());
        }
        ctx.bulk(b"port");
        ctx.int(port);
        ctx.bulk(b"endpoint");
        ctx.bulk(host.as_bytes());
        ctx.bulk(b"role");
        ctx.bulk(b"master");
        ctx.bulk(b"replication-offset");
        ctx.int(0);
        ctx.bulk(b"health");
        ctx.bulk(health.as_bytes());
    }
    Ok(())
}

fn nodes(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let view = view(ctx)?;
    let snapshot = view.snapshot();
    let table = &snapshot.table;
    let ranges = table.slot_ranges();
    let mut text = String::new();
    for member in table.members() {
        let (host, port) = host_port(&member.resp);
        let myself = if member.id == view.me().id {
            "myself,"
        } else {
            ""
        };
        let state = if member.status == Status::Ready {
            "connected"
        } else {
            "disconnected"
        };
        let _ = write!(
            text,
            "{} {host}:{port}@0 {myself}master - 0 0 {} {state}",
            hex_id(&member.id),
            view.version(),
        );
        for range in ranges.iter().filter(|r| r.2.id == member.id) {
            let _ = write!(text, " {}-{}", range.0, range.1);
        }
        text.push('\n');
    }
    ctx.verbatim(text.as_bytes());
    Ok(())
}

fn keyslot(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    view(ctx)?;
    ctx.int(i64::from(key_slot(argv[2])));
    Ok(())
}

/// A slot argument, checked as Redis does.
fn slot_arg(arg: &[u8]) -> Result<u16, CmdError> {
    u16::try_from(parse_i64(arg)?)
        .ok()
        .filter(|&slot| slot < SLOTS)
        .ok_or_else(|| CmdError::new(ErrorCode::InvalidArgument, "Invalid slot"))
}

/// The keys this node holds in `slot`, at most `limit`.
fn keys_in_slot(ctx: &Ctx<'_>, slot: u16, limit: usize) -> Vec<Vec<u8>> {
    let (mut cursor, mut found) = (0, Vec::new());
    loop {
        let (next, keys) = ctx.node.store.scan(cursor, 1024);
        found.extend(keys.into_iter().filter(|k| key_slot(k) == slot));
        if next == 0 || found.len() >= limit {
            found.truncate(limit);
            return found;
        }
        cursor = next;
    }
}

fn countkeysinslot(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    view(ctx)?;
    let slot = slot_arg(argv[2])?;
    let count = keys_in_slot(ctx, slot, usize::MAX).len();
    ctx.uint(count as u64);
    Ok(())
}

fn getkeysinslot(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    view(ctx)?;
    let slot = slot_arg(argv[2])?;
    let limit = usize::try_from(parse_i64(argv[3])?)
        .map_err(|_| CmdError::new(ErrorCode::InvalidArgument, "Invalid number of keys"))?;
    let keys = keys_in_slot(ctx, slot, limit);
    ctx.array(keys.len());
    for key in keys {
        ctx.bulk(&key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;

    #[test]
    fn without_cluster_support_the_commands_say_so() {
        let mut h = Harness::new();
        let disabled = "-ERR This instance has cluster support disabled\r\n";
        h.check(&[
            ("CLUSTER INFO", disabled),
            ("CLUSTER KEYSLOT foo", disabled),
            ("ASKING", disabled),
            ("READONLY", disabled),
        ]);
    }
}
