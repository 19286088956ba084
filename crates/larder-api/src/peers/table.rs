//! What one gateway knows of its peers, its own lease and its strong writes awaiting
//! acknowledgements: plain state changed by the listener's events, with the time passed in
//! (no I/O, no clock of its own). `docs/ARCHITECTURE.md` ("Gateways without cache nodes")
//! explains why waiting this way means no peer serves an older copy after a strong write.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// Pings sent and not yet heard back before the gateway stops pinging (its listener is stuck,
/// and peers should see it lapse).
const MAX_OUTSTANDING_PINGS: usize = 2;

/// Leases after which a ping never heard back is forgotten (lost with a connection).
const PING_FORGOTTEN_AFTER: u32 = 10;

/// How a strong write's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum By {
    /// Every live peer acknowledged it (or said goodbye).
    Acks,
    /// Some peer's lease, or the write's own deadline, ran out first.
    Leases,
}

/// Whether a strong write may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Done(By),
    /// Not before this, unless an event comes first.
    Wait(Instant),
}

#[derive(Debug)]
enum Owed {
    /// The writer's own notification has not come back yet.
    Echo,
    /// This gateway had not listened for a whole lease when the write began, so a peer may
    /// hold a lease it never heard of: the write waits out its deadline.
    Unknown,
    /// Acknowledgements still owed, by peer.
    Peers(HashSet<String>),
}

#[derive(Debug)]
struct Pending {
    began: Instant,
    deadline: Option<Instant>,
    owed: Owed,
    lapsed: bool,
}

/// The state.
#[derive(Debug)]
pub(crate) struct Table {
    me: String,
    /// The lease plus the margin for clocks that run at different rates.
    grace: Duration,
    lease: Duration,
    /// Each peer's last ping, when it was heard.
    peers: HashMap<String, Instant>,
    pending: HashMap<u64, Pending>,
    listening_since: Option<Instant>,
    pings: Vec<(u64, Instant)>,
    next_ping: u64,
    lease_until: Option<Instant>,
}

impl Table {
    /// The state of gateway `me` with leases of `lease`.
    pub(crate) fn new(me: &str, lease: Duration) -> Self {
        Self {
            me: me.to_owned(),
            grace: lease + lease / 10,
            lease,
            peers: HashMap::new(),
            pending: HashMap::new(),
            listening_since: None,
            pings: Vec::new(),
            next_ping: 0,
            lease_until: None,
        }
    }

    /// The listener listens (again) since `now`.
    pub(crate) fn listening(&mut self, now: Instant) {
        self.listening_since = Some(now);
        self.pings.clear();
    }

    /// The listener's connection is lost: nothing cached may be served until a fresh lease.
    pub(crate) fn lost(&mut self) {
        self.listening_since = None;
        self.lease_until = None;
        self.pings.clear();
    }

    /// The local lease: copies may be served before this.
    pub(crate) fn lease_until(&self) -> Option<Instant> {
        self.lease_until
    }

    /// A ping to send now, if one is due (the listener listens, and not too many are unheard).
    pub(crate) fn ping_due(&mut self, now: Instant) -> Option<u64> {
        self.listening_since?;
        let forget = self.lease * PING_FORGOTTEN_AFTER;
        self.pings
            .retain(|(_, sent)| now.duration_since(*sent) < forget);
        if self.pings.len() >= MAX_OUTSTANDING_PINGS {
            return None;
        }
        self.next_ping += 1;
        self.pings.push((self.next_ping, now));
        Some(self.next_ping)
    }

    /// Ping `seq` could not be sent.
    pub(crate) fn ping_failed(&mut self, seq: u64) {
        self.pings.retain(|(s, _)| *s != seq);
    }

    /// A ping heard at `now`. One of this gateway's own proves that every notification
    /// committed before it has been handled, and renews the lease from when it was sent.
    pub(crate) fn on_ping(&mut self, from: &str, seq: u64, now: Instant) {
        if from != self.me {
            self.peers.insert(from.to_owned(), now);
            return;
        }
        let Some(&(_, sent)) = self.pings.iter().find(|(s, _)| *s == seq) else {
            return;
        };
        self.pings.retain(|(s, _)| *s > seq);
        let until = sent + self.lease;
        self.lease_until = Some(self.lease_until.map_or(until, |u| u.max(until)));
    }

    /// `from` stopped.
    pub(crate) fn on_bye(&mut self, from: &str) {
        self.peers.remove(from);
        for pending in self.pending.values_mut() {
            if let Owed::Peers(owed) = &mut pending.owed {
                owed.remove(from);
            }
        }
    }

    /// A strong write `seq` begins (before its transaction).
    pub(crate) fn begin(&mut self, seq: u64, now: Instant) {
        let pending = Pending {
            began: now,
            deadline: None,
            owed: Owed::Echo,
            lapsed: false,
        };
        self.pending.insert(seq, pending);
    }

    /// Write `seq` committed at or before `now`: every lease granted before the commit has
    /// run out one grace later.
    pub(crate) fn committed(&mut self, seq: u64, now: Instant) {
        if let Some(pending) = self.pending.get_mut(&seq) {
            pending.deadline = Some(now + self.grace);
        }
    }

    /// Write `seq` is answered or failed.
    pub(crate) fn end(&mut self, seq: u64) {
        self.pending.remove(&seq);
    }

    /// This gateway's own change `seq` came back at `now`: every peer's ping committed before
    /// it has been heard, so the peers live now are those that may hold the old copy.
    pub(crate) fn on_echo(&mut self, seq: u64, now: Instant) {
        let complete = self
            .listening_since
            .zip(self.pending.get(&seq))
            .is_some_and(|(since, p)| since + self.grace <= p.began);
        let owed = if complete {
            Owed::Peers(self.live(now).into_iter().collect())
        } else {
            Owed::Unknown
        };
        if let Some(pending) = self.pending.get_mut(&seq)
            && matches!(pending.owed, Owed::Echo)
        {
            pending.owed = owed;
        }
    }

    /// `from` acknowledged this gateway's changes `seqs`.
    pub(crate) fn on_ack(&mut self, from: &str, seqs: &[u64]) {
        for seq in seqs {
            if let Some(Pending {
                owed: Owed::Peers(owed),
                ..
            }) = self.pending.get_mut(seq)
            {
                owed.remove(from);
            }
        }
    }

    /// Whether write `seq` may be answered at `now`.
    pub(crate) fn check(&mut self, seq: u64, now: Instant) -> Settled {
        let grace = self.grace;
        let peers = &self.peers;
        let Some(pending) = self.pending.get_mut(&seq) else {
            return Settled::Done(By::Acks);
        };
        let deadline = *pending.deadline.get_or_insert(now + grace);
        if now >= deadline {
            return Settled::Done(By::Leases);
        }
        let Owed::Peers(owed) = &mut pending.owed else {
            return Settled::Wait(deadline);
        };
        let lapses = |peer: &String| peers.get(peer).map(|seen| *seen + grace);
        let before = owed.len();
        owed.retain(|peer| lapses(peer).is_some_and(|at| at > now));
        pending.lapsed |= owed.len() < before;
        match owed.iter().filter_map(lapses).min() {
            None if pending.lapsed => Settled::Done(By::Leases),
            None => Settled::Done(By::Acks),
            Some(at) => Settled::Wait(at.min(deadline)),
        }
    }

    /// The peers heard within a grace of `now`; the others are forgotten.
    pub(crate) fn live(&mut self, now: Instant) -> Vec<String> {
        let grace = self.grace;
        self.peers.retain(|_, seen| *seen + grace > now);
        self.peers.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(1000);
    const GRACE: Duration = Duration::from_millis(1100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A table of "me" that has listened long enough and heard peers `a` and `b` at `t0`.
    fn settled_table(t0: Instant) -> Table {
        let mut table = Table::new("me", LEASE);
        table.listening(t0);
        let t = t0 + GRACE;
        table.on_ping("a", 1, t);
        table.on_ping("b", 1, t);
        table
    }

    #[test]
    fn the_lease_runs_from_when_the_own_ping_was_sent() {
        let t0 = Instant::now();
        let mut table = Table::new("me", LEASE);
        assert_eq!(table.ping_due(t0), None, "not listening: no pings");
        table.listening(t0);
        let first = table.ping_due(t0).unwrap();
        let second = table.ping_due(t0 + ms(250)).unwrap();
        assert_eq!(table.ping_due(t0 + ms(500)), None, "two unheard: stop");
        table.on_ping("me", first, t0 + ms(600));
        assert_eq!(table.lease_until(), Some(t0 + LEASE));
        table.on_ping("me", second, t0 + ms(700));
        assert_eq!(table.lease_until(), Some(t0 + ms(250) + LEASE));
        assert!(table.ping_due(t0 + ms(750)).is_some());
        table.lost();
        assert_eq!(table.lease_until(), None);
        assert_eq!(table.ping_due(t0 + ms(800)), None);
    }

    #[test]
    fn a_write_waits_for_the_acks_of_the_peers_live_at_its_echo() {
        let t0 = Instant::now();
        let mut table = settled_table(t0);
        let t = t0 + GRACE + ms(10);
        table.begin(1, t);
        table.committed(1, t + ms(5));
        assert_eq!(table.check(1, t + ms(5)), Settled::Wait(t + ms(5) + GRACE));
        table.on_echo(1, t + ms(6));
        table.on_ack("a", &[1]);
        // b lapses one grace after its last ping, before the write's own deadline.
        assert_eq!(table.check(1, t + ms(7)), Settled::Wait(t0 + GRACE + GRACE));
        table.on_ack("b", &[1]);
        assert_eq!(table.check(1, t + ms(8)), Settled::Done(By::Acks));
    }

    #[test]
    fn a_silent_peer_is_waited_for_until_its_lease_has_lapsed() {
        let t0 = Instant::now();
        let mut table = settled_table(t0);
        let t = t0 + GRACE + ms(10);
        table.begin(1, t);
        table.committed(1, t);
        table.on_echo(1, t);
        table.on_ack("a", &[1]);
        let lapse = t0 + GRACE + GRACE;
        assert_eq!(table.check(1, lapse - ms(1)), Settled::Wait(lapse));
        assert_eq!(table.check(1, lapse), Settled::Done(By::Leases));
    }

    #[test]
    fn a_goodbye_releases_the_write() {
        let t0 = Instant::now();
        let mut table = settled_table(t0);
        let t = t0 + GRACE + ms(10);
        table.begin(1, t);
        table.on_echo(1, t);
        table.on_ack("a", &[1]);
        table.on_bye("b");
        assert_eq!(table.check(1, t), Settled::Done(By::Acks));
        assert_eq!(table.live(t), vec!["a".to_owned()]);
    }

    #[test]
    fn without_a_whole_lease_of_listening_a_write_waits_out_its_deadline() {
        let t0 = Instant::now();
        let mut table = Table::new("me", LEASE);
        table.listening(t0);
        table.begin(1, t0 + ms(100));
        table.committed(1, t0 + ms(110));
        table.on_echo(1, t0 + ms(120));
        let deadline = t0 + ms(110) + GRACE;
        assert_eq!(table.check(1, t0 + ms(130)), Settled::Wait(deadline));
        assert_eq!(table.check(1, deadline), Settled::Done(By::Leases));
    }

    #[test]
    fn without_its_echo_a_write_waits_out_its_deadline() {
        let t0 = Instant::now();
        let mut table = settled_table(t0);
        let t = t0 + GRACE + ms(10);
        table.begin(1, t);
        table.committed(1, t);
        table.on_ack("a", &[1]);
        table.on_ack("b", &[1]);
        assert_eq!(table.check(1, t + ms(500)), Settled::Wait(t + GRACE));
        table.end(1);
        assert_eq!(table.check(1, t + ms(500)), Settled::Done(By::Acks));
    }
}
