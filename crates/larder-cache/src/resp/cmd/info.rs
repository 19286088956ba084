//! INFO: the node described in Redis's text format (`# Section` headings, `field:value`
//! lines, a blank line between sections), with the fields clients, exporters and dashboards
//! read. Memory figures are the store's accounted bytes and its live bound.

use std::fmt::{Display, Write as _};

use larder_store::StoreStats;

use crate::resp::cmd::connection::REDIS_VERSION;
use crate::resp::ctx::{CmdResult, Ctx};

/// The sections in the order Redis prints them, and whether `default` includes each.
const SECTIONS: [(&str, bool); 10] = [
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("commandstats", false),
    ("cluster", true),
    ("keyspace", true),
];

/// INFO [section …]: unknown section names add nothing, as in Redis.
pub(super) fn info(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let chosen = chosen(&argv[1..]);
    let stats = ctx.node.store.stats();
    let mut out = String::with_capacity(2048);
    for (&(name, _), _) in SECTIONS.iter().zip(chosen).filter(|(_, on)| *on) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match name {
            "server" => server(&mut out, ctx),
            "clients" => clients(&mut out, ctx),
            "memory" => memory(&mut out, ctx, &stats),
            "persistence" => persistence(&mut out),
            "stats" => counters(&mut out, ctx, &stats),
            "replication" => replication(&mut out),
            "cpu" => cpu(&mut out),
            "commandstats" => commandstats(&mut out, ctx, &stats),
            "cluster" => cluster(&mut out, ctx),
            _ => keyspace(&mut out, &stats),
        }
    }
    ctx.verbatim(out.as_bytes());
    Ok(())
}

/// Which of [`SECTIONS`] the arguments ask for; none means `default`.
fn chosen(args: &[&[u8]]) -> [bool; SECTIONS.len()] {
    if args.is_empty() {
        return SECTIONS.map(|(_, default)| default);
    }
    let mut chosen = [false; SECTIONS.len()];
    for arg in args {
        let arg = arg.to_ascii_lowercase();
        for (on, (name, default)) in chosen.iter_mut().zip(SECTIONS) {
            *on |= match arg.as_slice() {
                b"all" | b"everything" => true,
                b"default" => default,
                other => other == name.as_bytes(),
            };
        }
    }
    chosen
}

fn heading(out: &mut String, title: &str) {
    let _ = write!(out, "# {title}\r\n");
}

fn field(out: &mut String, name: &str, value: impl Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn server(out: &mut String, ctx: &Ctx<'_>) {
    let uptime = ctx.node.uptime_secs();
    heading(out, "Server");
    field(out, "redis_version", REDIS_VERSION);
    field(out, "redis_git_sha1", "00000000");
    field(out, "redis_git_dirty", 0);
    let mode = if ctx.node.cluster.is_some() {
        "cluster"
    } else {
        "standalone"
    };
    field(out, "redis_mode", mode);
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    field(out, "os", format_args!("{os} {arch}"));
    field(out, "arch_bits", usize::BITS);
    field(out, "process_id", std::process::id());
    // The port this connection reached, which is the real one even when configured as 0.
    field(out, "tcp_port", ctx.client.local.port());
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86_400);
    field(out, "larder_version", env!("CARGO_PKG_VERSION"));
}

fn clients(out: &mut String, ctx: &Ctx<'_>) {
    heading(out, "Clients");
    field(out, "connected_clients", ctx.node.clients.count());
    field(out, "cluster_connections", 0);
    field(out, "maxclients", ctx.node.config.max_clients);
    field(out, "blocked_clients", 0);
    field(out, "tracking_clients", ctx.node.tracking.subscribers());
}

fn memory(out: &mut String, ctx: &Ctx<'_>, stats: &StoreStats) {
    heading(out, "Memory");
    field(out, "used_memory", stats.used);
    field(out, "used_memory_human", human(stats.used));
    field(out, "maxmemory", stats.capacity);
    field(out, "maxmemory_human", human(stats.capacity));
    field(out, "maxmemory_policy", ctx.node.store.policy().name());
}

/// Bytes as Redis's `*_human` fields show them: `512B`, `1.50K`, `16.00M`, `2.00G`.
fn human(bytes: u64) -> String {
    const UNITS: [char; 5] = ['K', 'M', 'G', 'T', 'P'];
    let mut scaled = bytes as f64;
    let mut unit = None;
    for next in UNITS {
        if scaled < 1024.0 {
            break;
        }
        scaled /= 1024.0;
        unit = Some(next);
    }
    match unit {
        None => format!("{bytes}B"),
        Some(unit) => format!("{scaled:.2}{unit}"),
    }
}

/// larder keeps nothing on disk; the fields say so in the words clients check.
fn persistence(out: &mut String) {
    heading(out, "Persistence");
    for name in [
        "loading",
        "async_loading",
        "rdb_changes_since_last_save",
        "rdb_bgsave_in_progress",
        "aof_enabled",
        "aof_rewrite_in_progress",
    ] {
        field(out, name, 0);
    }
}

/// The counters since the last `CONFIG RESETSTAT`.
fn counters(out: &mut String, ctx: &Ctx<'_>, stats: &StoreStats) {
    let counters = ctx.node.metrics.since_reset(stats);
    // The last index counts unknown commands.
    let (ok, failed) = counters
        .commands
        .iter()
        .fold((0, 0), |(ok, failed), c| (ok + c[0], failed + c[1]));
    heading(out, "Stats");
    field(out, "total_connections_received", counters.connections);
    field(out, "total_commands_processed", ok + failed);
    field(out, "rejected_connections", counters.rejected);
    field(out, "expired_keys", counters.expired);
    field(out, "evicted_keys", counters.evicted);
    field(out, "keyspace_hits", counters.hits);
    field(out, "keyspace_misses", counters.misses);
    field(out, "total_error_replies", failed);
    field(out, "tracking_total_keys", ctx.node.tracking.tracked_keys());
}

/// larder does not replicate yet: a primary without replicas and an empty stream.
fn replication(out: &mut String) {
    heading(out, "Replication");
    field(out, "role", "master");
    field(out, "connected_slaves", 0);
    field(out, "master_failover_state", "no-failover");
    field(out, "master_replid", "0".repeat(40));
    field(out, "master_replid2", "0".repeat(40));
    field(out, "master_repl_offset", 0);
    field(out, "second_repl_offset", -1);
    field(out, "repl_backlog_active", 0);
    field(out, "repl_backlog_size", 0);
    field(out, "repl_backlog_first_byte_offset", 0);
    field(out, "repl_backlog_histlen", 0);
}

/// CPU time the process has used, in seconds, as Redis reports it.
fn cpu(out: &mut String) {
    let cpu = larder_proto::metrics::process::cpu_times().unwrap_or_default();
    heading(out, "CPU");
    field(out, "used_cpu_sys", format_args!("{:.6}", cpu.system));
    field(out, "used_cpu_user", format_args!("{:.6}", cpu.user));
    field(
        out,
        "used_cpu_sys_children",
        format_args!("{:.6}", cpu.children_system),
    );
    field(
        out,
        "used_cpu_user_children",
        format_args!("{:.6}", cpu.children_user),
    );
}

/// Calls and time per command since the last `CONFIG RESETSTAT`: errors of every kind count
/// as failed calls, and a batch's execution time is shared among its commands.
fn commandstats(out: &mut String, ctx: &Ctx<'_>, stats: &StoreStats) {
    let counters = ctx.node.metrics.since_reset(stats);
    heading(out, "Commandstats");
    for (command, [ok, failed, ns]) in ctx.table.iter().zip(&counters.commands) {
        let calls = ok + failed;
        if calls > 0 {
            let usec = ns / 1_000;
            let per_call = *ns as f64 / 1_000.0 / calls as f64;
            let _ = write!(
                out,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls=0,failed_calls={failed}\r\n",
                command.name,
            );
        }
    }
}

fn cluster(out: &mut String, ctx: &Ctx<'_>) {
    heading(out, "Cluster");
    field(out, "cluster_enabled", u8::from(ctx.node.cluster.is_some()));
}

/// larder has one database; its line is left out while it is empty, as Redis does. The store
/// does not count entries with an expiry, so `expires` and `avg_ttl` show 0.
fn keyspace(out: &mut String, stats: &StoreStats) {
    heading(out, "Keyspace");
    if stats.items > 0 {
        field(
            out,
            "db0",
            format_args!("keys={},expires=0,avg_ttl=0", stats.items),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::human;
    use crate::resp::cmd::testing::Harness;

    fn bulk(text: &str) -> String {
        format!("${}\r\n{text}\r\n", text.len())
    }

    #[test]
    fn sizes_read_like_redis() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(16 << 20), "16.00M");
        assert_eq!(human(3 << 30), "3.00G");
    }

    #[test]
    fn default_sections_carry_the_fields_clients_read() {
        let mut h = Harness::new();
        let reply = h.run(&["INFO"]);
        let (header, text) = reply.split_once("\r\n").unwrap();
        assert_eq!(header, format!("${}", text.len() - 2));
        assert!(
            text.starts_with("# Server\r\nredis_version:7.2.0\r\n"),
            "{text}"
        );
        for wanted in [
            "\r\nredis_mode:standalone\r\n",
            "\r\narch_bits:64\r\n",
            "\r\ntcp_port:9\r\n",
            "\r\nuptime_in_days:0\r\n",
            &format!("\r\nlarder_version:{}\r\n", env!("CARGO_PKG_VERSION")),
            &format!("\r\nprocess_id:{}\r\n", std::process::id()),
            "\r\n\r\n# Clients\r\nconnected_clients:1\r\n",
            "\r\nmaxclients:10000\r\n",
            "\r\nused_memory:0\r\nused_memory_human:0B\r\n",
            "\r\nmaxmemory:16777216\r\nmaxmemory_human:16.00M\r\n",
            "\r\nmaxmemory_policy:adaptive\r\n",
            "\r\n# Persistence\r\nloading:0\r\n",
            "\r\nkeyspace_hits:0\r\nkeyspace_misses:0\r\n",
            "\r\nrole:master\r\n",
            "\r\ncluster_enabled:0\r\n",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing from {text}");
        }
        assert!(text.ends_with("\r\n# Keyspace\r\n\r\n"), "{text}");
        assert!(!text.contains("Commandstats"));
    }

    #[test]
    fn sections_are_chosen_by_name() {
        let mut h = Harness::new();
        h.check(&[
            ("SET k v", "+OK\r\n"),
            ("GET k", "$1\r\nv\r\n"),
            ("GET nothing", "$-1\r\n"),
            (
                "INFO keyspace",
                &bulk("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"),
            ),
            ("INFO nosuchsection", "$0\r\n\r\n"),
            (
                "info CLUSTER replication",
                &bulk(
                    "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\
                     master_failover_state:no-failover\r\n\
                     master_replid:0000000000000000000000000000000000000000\r\n\
                     master_replid2:0000000000000000000000000000000000000000\r\n\
                     master_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n\
                     repl_backlog_size:0\r\nrepl_backlog_first_byte_offset:0\r\n\
                     repl_backlog_histlen:0\r\n\r\n\
                     # Cluster\r\ncluster_enabled:0\r\n",
                ),
            ),
        ]);
        let stats = h.run(&["INFO", "stats"]);
        assert!(
            stats.contains("\r\nkeyspace_hits:1\r\nkeyspace_misses:1\r\n"),
            "{stats}"
        );
        assert!(!stats.contains("# Server"));
        let memory = h.run(&["INFO", "memory"]);
        assert!(memory.contains("\r\nused_memory:"), "{memory}");
        assert!(!memory.contains("\r\nused_memory:0\r\n"), "{memory}");
        // The CPU figures move between two calls; everything else must match.
        let steady = |text: String| -> Vec<String> {
            let lines = text.split("\r\n").skip(1);
            lines
                .filter(|l| !l.starts_with("used_cpu_"))
                .map(str::to_owned)
                .collect()
        };
        let all = h.run(&["INFO", "all"]);
        assert!(all.contains("# Commandstats\r\n") && all.contains("# Keyspace"));
        assert_eq!(steady(h.run(&["INFO", "everything"])), steady(all));
        assert_eq!(
            steady(h.run(&["INFO", "default"])),
            steady(h.run(&["INFO"]))
        );
    }

    #[test]
    fn cpu_time_is_reported_in_seconds() {
        let mut h = Harness::new();
        // Use some CPU first: the kernel counts it in 10 ms ticks.
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let cpu = h.run(&["INFO", "cpu"]);
        for field in ["used_cpu_sys:", "used_cpu_user:", "used_cpu_sys_children:"] {
            assert!(cpu.contains(&format!("\r\n{field}")), "{cpu}");
        }
        let seconds = |name: &str| -> f64 {
            cpu.split("\r\n")
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        assert!(
            seconds("used_cpu_user:") + seconds("used_cpu_sys:") > 0.0,
            "{cpu}"
        );
    }

    #[test]
    fn resp3_gets_a_verbatim_string() {
        let mut h = Harness::new();
        assert!(h.run(&["HELLO", "3"]).starts_with("%7\r\n"));
        let text = "# Cluster\r\ncluster_enabled:0\r\n";
        let want = format!("={}\r\ntxt:{text}\r\n", text.len() + 4);
        h.check(&[("INFO cluster", &want)]);
    }
}
