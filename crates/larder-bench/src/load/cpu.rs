//! CPU time of the server and of the load generator itself, read from `/proc/PID/stat`
//! (`utime + stime`) at the start and the end of the measured window.

use std::time::Duration;

use crate::error::{CpuError, Error};

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for user
/// space on every architecture we run on (`getconf CLK_TCK`).
const TICKS_PER_SECOND: u64 = 100;

/// Total CPU time of a process (user + system, every thread, exited ones included).
///
/// # Errors
/// When `/proc/{pid}/stat` cannot be read or parsed (no such process, or not Linux).
pub(crate) fn process_cpu(pid: &str) -> Result<Duration, CpuError> {
    let path = format!("/proc/{pid}/stat");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(CpuError::Read { path, source }),
    };
    let ticks = cpu_ticks(&text).ok_or(CpuError::Parse { path })?;
    Ok(ticks_to_duration(ticks))
}

/// `utime + stime` from the text of `/proc/PID/stat`, in clock ticks.
///
/// The second field, the command name, is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub(crate) fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks.saturating_mul(1000 / TICKS_PER_SECOND))
}

/// CPU time of the server (if its pid was given) and of this process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    server: Option<Duration>,
    client: Option<Duration>,
}

/// CPU time spent between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuUse {
    pub(crate) server: Option<Duration>,
    pub(crate) client: Option<Duration>,
}

/// Samples the server's and our own CPU time.
#[derive(Debug, Clone)]
pub(crate) struct CpuWatch {
    server_pid: Option<String>,
}

impl CpuWatch {
    /// Checks now that the server's `/proc` entry can be read, so a wrong pid fails at once.
    ///
    /// # Errors
    /// When `server_pid` names no readable process.
    pub(crate) fn new(server_pid: Option<u32>) -> Result<Self, Error> {
        if let Some(pid) = server_pid {
            process_cpu(&pid.to_string()).map_err(|source| Error::ServerPid { pid, source })?;
        }
        let server_pid = server_pid.map(|pid| pid.to_string());
        Ok(Self { server_pid })
    }

    /// The CPU times now; a process that cannot be read gives `None` for its part.
    pub(crate) fn sample(&self) -> CpuSample {
        CpuSample {
            server: self
                .server_pid
                .as_deref()
                .and_then(|pid| process_cpu(pid).ok()),
            client: process_cpu("self").ok(),
        }
    }
}

impl CpuSample {
    /// The CPU time spent from `self` to `later`.
    pub(crate) fn until(&self, later: &CpuSample) -> CpuUse {
        let spent = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        CpuUse {
            server: spent(self.server, later.server),
            client: spent(self.client, later.client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line shaped like `/proc/PID/stat`, with a command name made awkward on purpose.
    const STAT: &str = "4242 (larder (cache) x) S 1 4242 4242 0 -1 4194560 1523 0 0 0 \
                        731 269 0 0 20 0 3 0 123456 123456789 2048 18446744073709551615";

    #[test]
    fn reads_utime_plus_stime() {
        assert_eq!(cpu_ticks(STAT), Some(731 + 269));
        assert_eq!(ticks_to_duration(1000), Duration::from_secs(10));
    }

    #[test]
    fn refuses_truncated_or_garbled_lines() {
        assert_eq!(cpu_ticks(""), None);
        assert_eq!(cpu_ticks("1 (x) S 1 2 3"), None);
        assert_eq!(cpu_ticks(&STAT.replace(" 731 ", " x ")), None);
    }

    #[test]
    fn reads_our_own_process() {
        assert!(process_cpu("self").is_ok());
        assert!(CpuWatch::new(Some(u32::MAX)).is_err());
        let watch = CpuWatch::new(Some(std::process::id())).unwrap();
        let before = watch.sample();
        let spent = before.until(&watch.sample());
        assert!(spent.server.is_some() && spent.client.is_some());
        assert_eq!(CpuSample::default().until(&before).client, None);
    }
}
