//! `larder probe URL`: one plain-HTTP `GET`, exit status 0 for a 2xx answer and 1 otherwise.
//! Container images without a shell or curl (distroless) run it as their health check, e.g.
//! `larder probe http://127.0.0.1:7071/readyz`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use larder_proto::http_url::HttpUrl;

/// Where the probe looks when no URL is given: the gateway's readiness, as `larder up` (the
/// image's default command) serves it.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8080/readyz";

/// Arguments of `larder probe`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// `http://HOST[:PORT]/PATH` to GET (plain HTTP only).
    #[arg(default_value = DEFAULT_URL)]
    pub(crate) url: String,
    /// Give up after this many milliseconds (connect, send and answer together).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
}

/// Runs the probe: prints the status line's code and reason, or why there was none.
pub(crate) fn run(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms.max(1));
    match get_status(&args.url, deadline) {
        Ok(status) if (200..300).contains(&status) => {
            println!("{} answered {status}", args.url);
            Ok(ExitCode::SUCCESS)
        }
        Ok(status) => {
            eprintln!("larder probe: {} answered {status}", args.url);
            Ok(ExitCode::FAILURE)
        }
        Err(err) => {
            eprintln!("larder probe: {}: {err:#}", args.url);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Sends `GET path` and returns the answer's status code.
fn get_status(url: &str, deadline: Instant) -> anyhow::Result<u16> {
    let HttpUrl {
        addr: authority,
        host,
        path,
    } = HttpUrl::parse(url)?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .context("timed out")
    };
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, left()?).context("connecting")?;
    stream.set_write_timeout(Some(left()?))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: larder-probe\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).context("sending")?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        stream.set_read_timeout(Some(left()?))?;
        let n = stream.read(&mut buf).context("reading the answer")?;
        if n == 0 || head.len() > 4096 {
            bail!("no status line in the answer");
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status(&head)
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn parse_status(head: &[u8]) -> anyhow::Result<u16> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = std::str::from_utf8(line).context("status line is not text")?;
    let mut parts = line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    match (version, code.map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") && (100..600).contains(&code) => {
            Ok(code)
        }
        _ => bail!("not an HTTP/1 status line: {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// Serves one connection with `answer`, after reading the request head.
    fn serve_once(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0; 512];
            while !seen.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            assert!(seen.starts_with(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:"));
            conn.write_all(answer).unwrap();
        });
        format!("http://{addr}/readyz")
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn the_status_code_is_read_from_the_answer() {
        let url = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(get_status(&url, soon()).unwrap(), 200);
        let url = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(get_status(&url, soon()).unwrap(), 503);
        let url = serve_once(b"SSH-2.0-OpenSSH\r\n");
        assert!(get_status(&url, soon()).is_err());
        let url = serve_once(b"");
        assert!(get_status(&url, soon()).is_err());
    }

    #[test]
    fn exit_status_follows_the_answer() {
        let probe = |url: String| {
            run(&ProbeArgs {
                url,
                timeout_ms: 5000,
            })
            .unwrap()
        };
        let ok = probe(serve_once(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert_eq!(ok, ExitCode::SUCCESS);
        let down = probe(serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"));
        assert_eq!(down, ExitCode::FAILURE);
        // Nothing listens on a port just released.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = probe(format!("http://127.0.0.1:{port}/readyz"));
        assert_eq!(refused, ExitCode::FAILURE);
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        let start = Instant::now();
        let err = get_status(&url, Instant::now() + Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3), "{err:#}");
        drop(listener);
    }

    #[test]
    fn statuses_are_read_from_the_status_line() {
        assert_eq!(parse_status(b"HTTP/1.0 404 Not Found\r\n").unwrap(), 404);
        assert!(parse_status(b"HTTP/1.1 abc\r\n").is_err());
        assert!(parse_status(b"HTTP/2 200\r\n").is_err());
    }
}
