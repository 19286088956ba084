//! Gateways over one PostgreSQL database keeping their in-process caches right: every
//! committed write is announced on a channel (`pg_notify` in its transaction, so only once
//! it commits); each gateway listens on a connection of its own, drops what changed and
//! acknowledges; it serves cached copies only under a lease it renews by hearing its own
//! pings come back; a strong write is answered once every live peer has acknowledged it or
//! its lease has lapsed. The design and its argument are in `docs/ARCHITECTURE.md`
//! ("Gateways without cache nodes").

pub(crate) mod lease;
mod listener;
mod metrics;
mod table;
mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::DocCache;
use crate::db::DbError;
pub(crate) use lease::Lease;
use listener::{listen, notify, ping};
use table::{Settled, Table};
use wire::Message;

/// One gateway among its peers; the tasks stop when this is dropped.
#[derive(Debug)]
pub(crate) struct Peers {
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// The pinging task, awaited before saying goodbye (so no ping follows it).
    pinger: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug)]
struct Shared {
    me: String,
    lease_time: Duration,
    options: PgConnectOptions,
    /// Pings, acknowledgements and goodbyes (not the listener's connection).
    pool: PgPool,
    table: Mutex<Table>,
    /// Woken on every event a strong write may be waiting for.
    changed: Notify,
    seq: AtomicU64,
    lease: Arc<Lease>,
    cache: Arc<DocCache>,
    stats: metrics::Stats,
}

/// A write about to be made, announced in its transaction ([`Note::payload`]).
#[derive(Debug)]
pub(crate) struct Note {
    shared: Arc<Shared>,
    seq: u64,
    strong: bool,
    payload: String,
}

impl Note {
    /// What the transaction notifies on [`CHANNEL`].
    pub(crate) fn payload(&self) -> &str {
        &self.payload
    }
}

impl Drop for Note {
    fn drop(&mut self) {
        if self.strong {
            self.shared.table.lock().end(self.seq);
        }
    }
}

impl Peers {
    /// A lease, revoked, for the cache to read before [`Peers::start`] renews it.
    pub(crate) fn lease() -> Arc<Lease> {
        Arc::new(Lease::new())
    }

    /// Starts listening on the PostgreSQL database at `url` for `cache`, with leases of
    /// `lease_ms` (the listener connects in the background and retries).
    ///
    /// # Errors
    /// [`DbError::Opening`] for a URL sqlx cannot read.
    pub(crate) fn start(
        url: &str,
        lease_ms: u64,
        lease: Arc<Lease>,
        cache: Arc<DocCache>,
    ) -> Result<Self, DbError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| DbError::Opening(format!("cannot read the database URL: {e}")))?;
        let me = uuid::Uuid::now_v7().simple().to_string();
        let lease_time = Duration::from_millis(lease_ms.max(10));
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(lease_time)
            .connect_lazy_with(options.clone().application_name(&format!("larder {me}")));
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::new(&me, lease_time)),
            me,
            lease_time,
            options,
            pool,
            changed: Notify::new(),
            seq: AtomicU64::new(0),
            lease,
            cache,
            stats: metrics::Stats::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(listen(shared.clone(), stop.clone()));
        let pinger = tokio::spawn(ping(shared.clone(), stop.clone()));
        Ok(Self {
            shared,
            stop,
            pinger: Mutex::new(Some(pinger)),
        })
    }

    /// The note of a write of `collection/id` at `version` (0: a delete); a `strong` one is
    /// waited for by [`Peers::settle`].
    pub(crate) fn note(&self, collection: &str, id: &str, version: i64, strong: bool) -> Note {
        let shared = &self.shared;
        let seq = shared.seq.fetch_add(1, Relaxed) + 1;
        let emitted_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let payload = Message::Change {
            writer: &shared.me,
            seq,
            emitted_us,
            version,
            collection,
            id,
        }
        .encode();
        if strong {
            shared.table.lock().begin(seq, Instant::now());
        }
        Note {
            shared: shared.clone(),
            seq,
            strong,
            payload,
        }
    }

    /// Returns once no peer can serve a copy older than the committed write `note`: every
    /// live peer acknowledged it or its lease lapsed (at most a lease and a tenth). An
    /// eventual write returns at once.
    pub(crate) async fn settle(&self, note: Note) {
        if !note.strong {
            return;
        }
        let shared = &self.shared;
        shared.table.lock().committed(note.seq, Instant::now());
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let settled = shared.table.lock().check(note.seq, Instant::now());
            match settled {
                Settled::Done(by) => {
                    shared.stats.settled(by);
                    return;
                }
                Settled::Wait(until) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }

    /// Stops listening and pinging, and tells the peers, so that their writes wait for this
    /// gateway no longer.
    pub(crate) async fn bye(&self) {
        let shared = &self.shared;
        self.stop.cancel();
        shared.lease.set(None);
        let pinger = self.pinger.lock().take();
        if let Some(pinger) = pinger {
            let _ = pinger.await;
        }
        let payload = Message::Bye { from: &shared.me }.encode();
        if let Err(err) = notify(&shared.pool, &payload).await {
            tracing::debug!(%err, "goodbye not sent");
        }
    }

    /// Appends this gateway's peer metrics to the Prometheus text `out`.
    pub(crate) fn render(&self, out: &mut String) {
        let shared = &self.shared;
        let live = shared.table.lock().live(Instant::now()).len();
        shared
            .stats
            .render(out, &shared.me, live, shared.lease.live());
    }
}
