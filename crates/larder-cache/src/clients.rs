//! The connected RESP clients, for `CLIENT LIST`, `CLIENT INFO` and `INFO clients`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64};

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use crate::node::tracking::{Inbox, Notice};

/// Tracking notices one RESP connection may have queued before it is disconnected.
const INBOX: usize = 16_384;

/// The connected RESP clients, for `CLIENT LIST`, `CLIENT INFO` and `INFO clients`.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    next_id: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

impl Clients {
    /// Registers a new connection; it is listed until the returned guard drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        peer: SocketAddr,
        local: SocketAddr,
        now_ms: u64,
    ) -> ClientGuard {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let entry = Arc::new(ClientEntry {
            id,
            peer,
            local,
            created_ms: now_ms,
            last_ms: AtomicU64::new(now_ms),
            last_cmd: AtomicU16::new(u16::MAX),
            protocol: AtomicU8::new(2),
            meta: Mutex::new(ClientMeta::default()),
            inbox: Mutex::new(None),
            inbox_rx: Mutex::new(None),
            inbox_made: Notify::new(),
        });
        self.live.lock().insert(id, entry.clone());
        ClientGuard {
            clients: self.clone(),
            entry,
        }
    }

    /// Every connected client, by id.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ClientEntry>> {
        self.live.lock().values().cloned().collect()
    }

    /// The connected client with this id.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.live.lock().get(&id).cloned()
    }

    /// How many clients are connected.
    pub(crate) fn count(&self) -> usize {
        self.live.lock().len()
    }
}

/// Keeps a client listed while its connection lives.
#[derive(Debug)]
pub(crate) struct ClientGuard {
    clients: Arc<Clients>,
    pub(crate) entry: Arc<ClientEntry>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.live.lock().remove(&self.entry.id);
    }
}

/// What `CLIENT LIST` shows of one connection.
#[derive(Debug)]
pub(crate) struct ClientEntry {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) created_ms: u64,
    /// When the client last sent a request (updated once per batch).
    pub(crate) last_ms: AtomicU64,
    /// Index of the last command in the command table (`u16::MAX`: none yet).
    pub(crate) last_cmd: AtomicU16,
    /// RESP protocol version in use (2 or 3).
    pub(crate) protocol: AtomicU8,
    pub(crate) meta: Mutex<ClientMeta>,
    /// Where tracking notices for this connection go, made on first use.
    inbox: Mutex<Option<Inbox>>,
    /// A new inbox's receiving end, until the connection takes it.
    inbox_rx: Mutex<Option<mpsc::Receiver<Notice>>>,
    /// Wakes the connection to take it.
    pub(crate) inbox_made: Notify,
}

impl ClientEntry {
    /// Where tracking notices for this connection go (its own tracking, another
    /// connection's redirection): made on first use, and the connection told to read it.
    pub(crate) fn inbox(&self) -> Inbox {
        let mut inbox = self.inbox.lock();
        if let Some(inbox) = &*inbox {
            return inbox.clone();
        }
        let (made, rx) = Inbox::new(INBOX);
        *self.inbox_rx.lock() = Some(rx);
        *inbox = Some(made.clone());
        self.inbox_made.notify_one();
        made
    }

    /// The receiving end of a new inbox and the token that cuts the connection off when it
    /// overflows, once.
    pub(crate) fn take_inbox(
        &self,
    ) -> Option<(mpsc::Receiver<Notice>, tokio_util::sync::CancellationToken)> {
        let rx = self.inbox_rx.lock().take()?;
        let cut = self.inbox.lock().as_ref()?.cut.clone();
        Some((rx, cut))
    }
}

/// The parts of a client's description it sets itself.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientMeta {
    pub(crate) name: String,
    pub(crate) lib_name: String,
    pub(crate) lib_ver: String,
}
