//! How old an entry is that stands for a copy of something kept elsewhere (an origin's value,
//! a database document): fresh, then inside the stale-while-revalidate window, then inside the
//! stale-if-error window. The age is read back from the entry's expiry, which is set to the end
//! of its last window, so entries carry no extra bytes for it.

/// The windows of an entry's life, in milliseconds from when it was loaded or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Windows {
    /// Served as it is.
    pub fresh_ms: u64,
    /// After the fresh time: served, and refreshed once in the background.
    pub revalidate_ms: u64,
    /// After the fresh time: served only while loading a new copy fails.
    pub if_error_ms: u64,
}

/// Where an entry is in its [`Windows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Revalidate,
    /// Load a new copy; serve this one only if the load fails.
    IfError,
}

impl Windows {
    /// How long an entry lives: its fresh time, then the longer stale window.
    #[must_use]
    pub fn ttl_ms(&self) -> u64 {
        self.fresh_ms.saturating_add(self.stale_ms())
    }

    /// When an entry loaded or written at `now` (Unix ms) expires.
    #[must_use]
    pub fn expires_at(&self, now: u64) -> u64 {
        now.saturating_add(self.ttl_ms())
    }

    /// How old an entry expiring at `expires_at` is at `now`. An entry without an expiry was
    /// written by a client, not loaded, and is always fresh.
    #[must_use]
    pub fn freshness(&self, expires_at: Option<u64>, now: u64) -> Freshness {
        let Some(expires_at) = expires_at else {
            return Freshness::Fresh;
        };
        let stale_from = expires_at.saturating_sub(self.stale_ms());
        if now < stale_from {
            Freshness::Fresh
        } else if now - stale_from < self.revalidate_ms {
            Freshness::Revalidate
        } else {
            Freshness::IfError
        }
    }

    fn stale_ms(&self) -> u64 {
        self.revalidate_ms.max(self.if_error_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_ages_through_its_windows() {
        let w = Windows {
            fresh_ms: 100,
            revalidate_ms: 50,
            if_error_ms: 200,
        };
        let expires = w.expires_at(1_000);
        assert_eq!(expires, 1_300);
        assert_eq!(w.freshness(Some(expires), 1_099), Freshness::Fresh);
        assert_eq!(w.freshness(Some(expires), 1_100), Freshness::Revalidate);
        assert_eq!(w.freshness(Some(expires), 1_149), Freshness::Revalidate);
        assert_eq!(w.freshness(Some(expires), 1_150), Freshness::IfError);
        assert_eq!(w.freshness(None, u64::MAX), Freshness::Fresh);
    }

    #[test]
    fn no_stale_windows_means_fresh_until_expiry() {
        let w = Windows {
            fresh_ms: 10,
            ..Windows::default()
        };
        assert_eq!(w.ttl_ms(), 10);
        assert_eq!(w.freshness(Some(w.expires_at(0)), 9), Freshness::Fresh);
        assert_eq!(w.freshness(Some(u64::MAX), 0), Freshness::Fresh);
    }
}
