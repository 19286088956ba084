//! A value built from files and rebuilt when they change: TLS configurations (certificates
//! rotated without a restart), the gateway's JWT keys.
//!
//! A file counts as changed when its modification time or length does. A rebuild that fails (a
//! half-written file, a key that does not match its certificate) keeps the value in use and is
//! reported; the next change is tried again. Readers take the current value as an `Arc`, so
//! what they hold stays valid while a new one is swapped in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};

/// What identifies a version of the files: each one's modification time and length.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

type Build<C> = Box<dyn Fn() -> Result<C, String> + Send + Sync>;

/// A value built from files, rebuilt when they change.
pub struct Reloading<C> {
    paths: Vec<PathBuf>,
    build: Build<C>,
    current: RwLock<Arc<C>>,
    stamp: Mutex<Stamp>,
}

impl<C> std::fmt::Debug for Reloading<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<C: Send + Sync + 'static> Reloading<C> {
    /// Builds the first value with `build`, which reads `paths`.
    ///
    /// # Errors
    /// What `build` returns.
    pub fn new(
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<C, String> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, String> {
        let stamp = stamp(&paths);
        let first = build()?;
        Ok(Arc::new(Self {
            paths,
            build: Box::new(build),
            current: RwLock::new(Arc::new(first)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// The value in use.
    pub fn current(&self) -> Arc<C> {
        self.current.read().clone()
    }

    /// Rebuilds the value if a file changed since the last build or attempt: `Ok(true)` when
    /// it was replaced, `Ok(false)` when nothing changed.
    ///
    /// # Errors
    /// The rebuild's error; the value in use stays.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let now = stamp(&self.paths);
        {
            let mut last = self.stamp.lock();
            if *last == now {
                return Ok(false);
            }
            *last = now;
        }
        let next = (self.build)()?;
        *self.current.write() = Arc::new(next);
        Ok(true)
    }

    /// Checks the files every `every` until `stop` resolves, logging each reload and failure.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(files = ?self.paths, "files reloaded"),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "files changed but do not load; keeping the previous ones");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_changed_file_is_loaded_and_a_bad_one_is_not() {
        let dir = std::env::temp_dir().join(format!("larder-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("value");
        std::fs::write(&path, "1").unwrap();
        let read = path.clone();
        let reloading = Reloading::new(vec![path.clone()], move || {
            let text = std::fs::read_to_string(&read).map_err(|e| e.to_string())?;
            text.trim().parse::<u32>().map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(*reloading.current(), 1);
        assert_eq!(reloading.reload_if_changed(), Ok(false));
        std::fs::write(&path, "22").unwrap();
        assert_eq!(reloading.reload_if_changed(), Ok(true));
        assert_eq!(*reloading.current(), 22);
        std::fs::write(&path, "not a number").unwrap();
        assert!(reloading.reload_if_changed().is_err());
        assert_eq!(*reloading.current(), 22, "the last good value stays");
        assert_eq!(
            reloading.reload_if_changed(),
            Ok(false),
            "tried once per change"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
