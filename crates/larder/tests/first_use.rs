//! What a new user meets first, run as they would run it: `larder up` and `larder api` as
//! child processes, their banners, their errors, `--help`, `--print-config`, and the README's
//! quickstart pasted into a shell.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LARDER: &str = env!("CARGO_BIN_EXE_larder");

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("first-use-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `larder` with no `LARDER_*` variables but `vars`.
fn larder(vars: &[(&str, &str)]) -> Command {
    with_env(Command::new(LARDER), vars)
}

/// `command` without the caller's `LARDER_*` variables, with `vars` and quiet logs.
fn with_env(mut command: Command, vars: &[(&str, &str)]) -> Command {
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("LARDER_")) {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied()).env("RUST_LOG", "warn");
    command
}

/// Every port on 0, so tests do not collide.
const FREE_PORTS: [&str; 8] = [
    "--listen",
    "127.0.0.1:0",
    "--resp-addr",
    "127.0.0.1:0",
    "--grpc-addr",
    "127.0.0.1:0",
    "--admin-addr",
    "127.0.0.1:0",
];

/// A running server, killed when dropped; `banner` is its standard output up to the line
/// that starts with `until`.
struct Running {
    child: Child,
    banner: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut command: Command, until: &str) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("exited before printing {until:?}: {banner}{err}");
        }
        banner.push_str(&line);
        if line.trim_start().starts_with(until) {
            break;
        }
    }
    Running { child, banner }
}

/// The `host:port` of the first `http://` URL on the banner line starting with `label`.
fn address(banner: &str, label: &str) -> String {
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in {banner}"));
    let url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap();
    url.split('/').next().unwrap().to_owned()
}

fn finished(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn up_help_names_every_port_and_its_variable() {
    let output = larder(&[]).args(["up", "--help"]).output().unwrap();
    let (help, _) = finished(&output);
    for needle in [
        "--listen",
        "--resp-addr",
        "--grpc-addr",
        "--admin-addr",
        "LARDER_API_LISTEN",
        "--print-config",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn print_config_hides_every_secret() {
    let secrets = [
        ("LARDER_API_TOKEN", "api-s3cret"),
        ("LARDER_API_CACHE_TOKEN", "node-s3cret"),
        (
            "LARDER_API_DATABASE",
            "postgres://app:pg-s3cret@db.internal/larder",
        ),
        ("LARDER_CACHE_PASSWORD", "resp-s3cret"),
    ];
    let output = larder(&secrets)
        .args(["api", "--print-config"])
        .output()
        .unwrap();
    let (text, err) = finished(&output);
    assert!(output.status.success(), "{err}");
    assert!(!text.contains("s3cret"), "a secret printed:\n{text}");
    assert!(
        text.contains("postgres://app:***@db.internal/larder"),
        "{text}"
    );
}

#[test]
fn api_makes_a_sqlite_file_that_does_not_exist_yet() {
    let dir = scratch("newdb");
    let db = dir.join("new.db");
    let url = format!("sqlite://{}", db.display());
    let mut command = larder(&[]);
    command.args(["api", "--database", &url, "--listen", "127.0.0.1:0"]);
    let running = start(command, "ops");
    assert!(db.exists(), "{}", running.banner);
}

#[test]
fn api_names_the_missing_directory_of_a_database() {
    let dir = scratch("nodir");
    let url = format!("sqlite://{}/nowhere/x.db", dir.display());
    let output = larder(&[])
        .args(["api", "--database", &url, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let (_, err) = finished(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("nowhere/x.db") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn up_refuses_a_data_path_that_is_a_file() {
    let dir = scratch("datafile");
    let file = dir.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let output = larder(&[])
        .args(["up", "--data"])
        .arg(&file)
        .args(FREE_PORTS)
        .output()
        .unwrap();
    let (out, err) = finished(&output);
    assert!(!output.status.success());
    assert!(!out.contains("larder is up"), "{out}");
    assert!(
        err.contains("names a file") && !err.contains("File exists"),
        "{err}"
    );
}

#[test]
fn up_says_it_is_up_only_once_its_database_opened() {
    // A database that cannot be opened: its path is a directory.
    let dir = scratch("badfile");
    std::fs::create_dir_all(dir.join("larder.db")).unwrap();
    let output = larder(&[])
        .args(["up", "--data"])
        .arg(&dir)
        .args(FREE_PORTS)
        .output()
        .unwrap();
    let (out, err) = finished(&output);
    assert!(!output.status.success());
    assert!(!out.contains("larder is up"), "{out}");
    assert!(err.contains("larder.db"), "{err}");

    // A read-only data directory, where this user cannot write (root can: then the binary
    // runs as nobody, with setpriv).
    let dir = scratch("readonly");
    set_mode(&dir, 0o555);
    let mut command = larder(&[]);
    if std::fs::write(dir.join("probe"), "x").is_ok() {
        std::fs::remove_file(dir.join("probe")).unwrap();
        let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            eprintln!("root writes to read-only directories and there is no setpriv: skipped");
            return;
        };
        let mut nobody = Command::new(setpriv);
        nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups", LARDER]);
        command = with_env(nobody, &[]);
    }
    let output = command
        .args(["up", "--data"])
        .arg(&dir)
        .args(FREE_PORTS)
        .output()
        .unwrap();
    set_mode(&dir, 0o755);
    let (out, err) = finished(&output);
    assert!(!output.status.success());
    assert!(!out.contains("larder is up"), "{out}");
    assert!(
        err.contains("read-only") || err.contains("writable"),
        "{err}"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_port_in_use_is_named_once_with_the_setting_that_moves_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = scratch("port");
    let url = format!("sqlite://{}/x.db", dir.display());
    let output = larder(&[])
        .args(["api", "--database", &url, "--listen", &addr])
        .output()
        .unwrap();
    let (_, err) = finished(&output);
    assert!(!output.status.success());
    assert_eq!(err.matches(&addr).count(), 1, "{err}");
    assert_eq!(err.matches("in use").count(), 1, "{err}");
    assert!(
        err.contains("--listen ADDR or LARDER_API_LISTEN=ADDR"),
        "{err}"
    );

    let output = larder(&[])
        .args(["up", "--data"])
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--resp-addr", &addr])
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let (out, err) = finished(&output);
    assert!(!out.contains("larder is up"), "{out}");
    assert_eq!(err.matches(&addr).count(), 1, "{err}");
    assert!(
        err.contains("--resp-addr ADDR or LARDER_CACHE_RESP_ADDR=ADDR"),
        "{err}"
    );
    drop(taken);
}

#[test]
fn up_names_the_configured_collections_and_the_root_points_to_the_docs() {
    let dir = scratch("collections");
    let config = dir.join("larder.toml");
    std::fs::write(&config, "[[api.collections]]\nname = \"books\"\n").unwrap();
    let mut command = larder(&[]);
    command
        .arg("--config")
        .arg(&config)
        .args(["up", "--data"])
        .arg(&dir)
        .args(FREE_PORTS);
    let running = start(command, "database");
    let banner = &running.banner;
    assert!(banner.contains("/v1/books"), "{banner}");
    assert!(!banner.contains("/v1/products"), "{banner}");
    let http = address(banner, "docs");
    let root = curl(&["-s", &format!("http://{http}/")]);
    let root: serde_json::Value = serde_json::from_str(&root).unwrap();
    assert_eq!(root["docs"], "/docs");
    assert_eq!(root["collections"], serde_json::json!(["/v1/books"]));
}

/// TLS settings in the environment (files that do not even exist) are for separately run
/// processes: `larder up` still starts, in plaintext on loopback.
#[test]
fn up_stays_plaintext_whatever_tls_settings_say() {
    let dir = scratch("plaintext");
    let missing = dir.join("missing.pem").display().to_string();
    let vars: Vec<(&str, &str)> = [
        "LARDER_API_TLS_CERT",
        "LARDER_API_TLS_KEY",
        "LARDER_API_TLS_CLIENT_CA",
        "LARDER_API_CACHE_TLS_CA",
        "LARDER_API_CACHE_TLS_CERT",
        "LARDER_API_CACHE_TLS_KEY",
        "LARDER_CACHE_TLS_CERT",
        "LARDER_CACHE_TLS_KEY",
        "LARDER_CACHE_TLS_CLIENT_CA",
        "LARDER_CACHE_TLS_CA",
    ]
    .into_iter()
    .map(|name| (name, missing.as_str()))
    .collect();
    let mut command = larder(&vars);
    command.args(["up", "--data"]).arg(&dir).args(FREE_PORTS);
    let running = start(command, "database");
    let http = address(&running.banner, "docs");
    let body = curl(&["-s", &format!("http://{http}/healthz")]);
    assert_eq!(body.trim(), "ok");
    // A cache miss goes through the node over plaintext gRPC.
    let body = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{http}/v1/products/nothing-here"),
    ]);
    assert_eq!(body, "404");
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl").args(args).output().expect("curl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The README's quickstart, pasted into bash against `larder up`: every command works as
/// written (no placeholder to edit), and the answers are the ones the comments promise.
#[test]
fn the_readme_quickstart_runs_as_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Quickstart: the API")
        .nth(1)
        .expect("a quickstart section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    assert!(!block.contains('<'), "a placeholder to edit:\n{block}");
    let dir = scratch("quickstart");
    let mut command = larder(&[]);
    command.args(["up", "--data"]).arg(&dir).args(FREE_PORTS);
    let running = start(command, "database");
    let http = address(&running.banner, "docs");
    let script = block.replace("localhost:8080", &http);
    let started = Instant::now();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .unwrap();
    let (out, err) = finished(&output);
    assert!(output.status.success(), "{err}\n{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // (Bodies end without a newline, so a status line may follow one on the same line.)
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &out[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["201", "200", "304", "200", "204"], "{out}");
    assert!(out.contains("\"Desk lamp\""), "{out}");
}
