//! A connection's read buffer: reused, compacted only when full and grown only when one reply
//! does not fit, so that reading replies allocates nothing in the steady state.

/// First size of a connection's read buffer; it doubles if a reply does not fit.
const READ_BUFFER: usize = 64 * 1024;

/// Received bytes not yet consumed: `buf[start..end]`.
#[derive(Debug)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Room to read into: moves pending bytes to the front, or grows, only when full.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.end, self.start) = (self.end - self.start, 0);
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_compacts_then_grows() {
        let mut inbox = Inbox::new();
        let size = inbox.spare().len();
        inbox.filled(size);
        inbox.consume(10);
        assert_eq!(inbox.spare().len(), 10, "pending bytes moved to the front");
        inbox.filled(10);
        assert_eq!(inbox.spare().len(), size, "a full buffer doubles");
        inbox.consume(size);
        assert!(inbox.pending().is_empty());
        assert_eq!((inbox.start, inbox.end), (0, 0));
    }
}
