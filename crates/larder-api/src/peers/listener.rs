//! A gateway's own side of the channel: the listening connection (what it hears, in commit
//! order, and what it does about it) and the pings that renew its lease.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgNotification, PgPool, PgPoolOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::table::Table;
use super::wire::{self, CHANNEL, Message};

/// First wait before the listener connects again after failing to.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait before the listener connects again after failing to.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// `SELECT pg_notify` of `payload` on [`CHANNEL`].
pub(super) async fn notify(pool: &PgPool, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(pool)
        .await
        .map(drop)
}

/// Listens, connecting again whenever the connection is lost; the local cache is flushed
/// and serves nothing from the loss until a fresh lease.
pub(super) async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = connect(&shared) => connected,
        };
        match connected {
            Ok(mut listener) => {
                backoff = MIN_BACKOFF;
                receive(&shared, &mut listener, &stop).await;
                if stop.is_cancelled() {
                    return;
                }
                shared.lost();
            }
            Err(err) => {
                tracing::warn!(%err, "change listener cannot connect; the local cache serves nothing");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Handles what `listener` receives until its connection is lost or `stop` is cancelled.
async fn receive(shared: &Arc<Shared>, listener: &mut PgListener, stop: &CancellationToken) {
    // Whatever changed while nothing listened is unknown: start empty.
    shared.cache.flush_local();
    shared.table.lock().listening(Instant::now());
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(first)) => {
                let mut batch = vec![first];
                batch.extend(std::iter::from_fn(|| listener.next_buffered()));
                handle(shared, &batch);
            }
            Ok(None) => {
                tracing::warn!("change listener lost its connection; flushing the local cache");
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "change listener failed; flushing the local cache");
                return;
            }
        }
    }
}

impl Shared {
    /// The listener's connection is gone: serve nothing, hold nothing, wake the writers
    /// waiting (they now wait for leases).
    fn lost(&self) {
        self.table.lock().lost();
        self.lease.set(None);
        self.cache.flush_local();
        self.changed.notify_waiters();
    }
}

/// A listener connection of its own (not pooled with anything else), listening.
async fn connect(shared: &Shared) -> Result<PgListener, sqlx::Error> {
    let options = shared
        .options
        .clone()
        .application_name(&format!("larder listener {}", shared.me));
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is replaced by a new listener (after a flush), not by this one.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Changes to acknowledge, by writer.
type Acks<'a> = Vec<(&'a str, Vec<u64>)>;

/// Handles notifications in the order they committed, then acknowledges the changes dropped.
fn handle(shared: &Arc<Shared>, batch: &[PgNotification]) {
    let now = Instant::now();
    let mut acks = Acks::new();
    {
        let mut table = shared.table.lock();
        for notification in batch {
            if let Some(message) = Message::parse(notification.payload()) {
                shared.apply(&mut table, message, now, &mut acks);
            }
        }
    }
    shared.changed.notify_waiters();
    let payloads: Vec<String> = acks
        .iter()
        .flat_map(|(writer, seqs)| wire::acks(&shared.me, writer, seqs))
        .collect();
    if !payloads.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for payload in payloads {
                if let Err(err) = notify(&shared.pool, &payload).await {
                    // The writer waits for the lease instead.
                    tracing::debug!(%err, "acknowledgement not sent");
                }
            }
        });
    }
}

impl Shared {
    /// One notification: drops what others changed (noting the acknowledgement owed), and
    /// records pings, echoes, acknowledgements and goodbyes.
    fn apply<'a>(
        &self,
        table: &mut Table,
        message: Message<'a>,
        now: Instant,
        acks: &mut Acks<'a>,
    ) {
        match message {
            Message::Change { writer, seq, .. } if writer == self.me => table.on_echo(seq, now),
            Message::Change {
                writer,
                seq,
                emitted_us,
                collection,
                id,
                ..
            } => {
                self.cache.forget_local(collection, id);
                self.stats.received(emitted_us);
                match acks.iter_mut().find(|(w, _)| *w == writer) {
                    Some((_, seqs)) => seqs.push(seq),
                    None => acks.push((writer, vec![seq])),
                }
            }
            Message::Ack { from, writer, seqs } if writer == self.me => table.on_ack(from, &seqs),
            Message::Ack { .. } => {}
            Message::Ping { from, seq } => {
                table.on_ping(from, seq, now);
                if from == self.me {
                    self.lease.set(table.lease_until());
                }
            }
            Message::Bye { from } => table.on_bye(from),
        }
    }
}

/// Pings every quarter lease while the listener listens.
pub(super) async fn ping(shared: Arc<Shared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(shared.lease_time / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(seq) = shared.table.lock().ping_due(Instant::now()) else {
            continue;
        };
        let payload = Message::Ping {
            from: &shared.me,
            seq,
        }
        .encode();
        if let Err(err) = notify(&shared.pool, &payload).await {
            tracing::debug!(%err, "ping not sent");
            shared.table.lock().ping_failed(seq);
        }
    }
}
