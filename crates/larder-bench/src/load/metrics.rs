//! A cache node's origin counters, read from its admin port's `/metrics` before and after a
//! burst: how many origin loads there were, and how many reads joined one already in flight.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Counter of origin loads, one series per origin and result.
const LOADS: &str = "larder_origin_loads_total";
/// Counter of reads that joined a load already in flight, one series per origin.
const COALESCED: &str = "larder_origin_coalesced_total";

/// The origin counters of a node at one moment, summed over origins (and results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OriginCounters {
    /// Origin loads, whatever their result.
    pub(crate) loads: u64,
    /// Reads that joined a load already in flight.
    pub(crate) coalesced: u64,
}

impl OriginCounters {
    /// Reads the counters from Prometheus text; a node without origins has none, so zero.
    fn parse(text: &str) -> Self {
        Self {
            loads: sum_series(text, LOADS),
            coalesced: sum_series(text, COALESCED),
        }
    }

    /// What the counters grew by since `before`.
    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            loads: self.loads.saturating_sub(before.loads),
            coalesced: self.coalesced.saturating_sub(before.coalesced),
        }
    }
}

/// The sum of every series of metric `name` in Prometheus text.
fn sum_series(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.as_bytes().first()? {
                b'{' => &rest[rest.rfind('}')? + 1..],
                b' ' | b'\t' => rest,
                _ => return None,
            };
            let value: f64 = value.split_whitespace().next()?.parse().ok()?;
            Some(value as u64)
        })
        .sum()
}

/// Reads the node's origin counters from `http://{admin}/metrics`.
pub(crate) async fn scrape(admin: &str, token: Option<&str>) -> Result<OriginCounters> {
    let url = format!("http://{admin}/metrics");
    let mut stream = match TcpStream::connect(admin).await {
        Ok(stream) => stream,
        Err(source) => {
            let admin = admin.to_owned();
            return Err(Error::Admin { admin, url, source });
        }
    };
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Error::io(format!("sending GET {url}")))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(Error::io(format!("reading {url}")))?;
    match http_body(&String::from_utf8_lossy(&response)) {
        Ok(body) => Ok(OriginCounters::parse(body)),
        Err(answer) => Err(Error::Metrics { url, answer }),
    }
}

/// The body of a whole HTTP/1.1 response with status 200; otherwise its status line (or that
/// it is none).
fn http_body(response: &str) -> Result<&str, String> {
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Err("not an HTTP response".to_owned());
    };
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(status.to_owned());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP larder_origin_loads_total Origin loads by origin and result.
# TYPE larder_origin_loads_total counter
larder_origin_loads_total{origin=\"docs\",result=\"found\"} 3
larder_origin_loads_total{origin=\"docs\",result=\"not_found\"} 1
larder_origin_loads_total{origin=\"docs\",result=\"error\"} 0
larder_origin_loads_total{origin=\"users\",result=\"found\"} 2
larder_origin_loads_total_extra 100
larder_origin_coalesced_total{origin=\"docs\"} 9999
larder_origin_coalesced_total{origin=\"users\"} 1e3
larder_origin_load_duration_seconds_count{origin=\"docs\"} 4
";

    #[test]
    fn counters_sum_every_series_of_their_metric_only() {
        let counters = OriginCounters::parse(METRICS);
        assert_eq!(
            counters,
            OriginCounters {
                loads: 6,
                coalesced: 10_999
            }
        );
        assert_eq!(
            OriginCounters::parse("# no origins\n"),
            OriginCounters::default()
        );
        assert_eq!(sum_series("larder_origin_loads_total 7\n", LOADS), 7);
        let before = OriginCounters {
            loads: 5,
            coalesced: 10_000,
        };
        assert_eq!(
            counters.since(before),
            OriginCounters {
                loads: 1,
                coalesced: 999
            }
        );
    }

    #[test]
    fn only_a_200_response_gives_a_body() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        assert_eq!(http_body(ok).unwrap(), "abc");
        let denied = "HTTP/1.1 401 Unauthorized\r\n\r\nbearer token required\n";
        assert!(http_body(denied).unwrap_err().to_string().contains("401"));
        assert!(http_body("garbage").is_err());
    }
}
