//! What a RESP connection of the load generator writes and reads: requests pre-encoded once as
//! templates whose key digits are overwritten in place, and a read buffer that is reused,
//! compacted only when full and grown only when one reply does not fit.

use anyhow::Context;
use larder_proto::resp::encode_request;

use super::keys::{KEY_PREFIX, KeySpace, Mix, Rng};

/// First size of a connection's read buffer; it doubles if a reply does not fit.
const READ_BUFFER: usize = 64 * 1024;

/// A pre-encoded request and where its key's digits sit in it.
#[derive(Debug, Clone)]
struct Template {
    bytes: Vec<u8>,
    digits_at: usize,
}

impl Template {
    fn new(args: &[&[u8]], key: &[u8]) -> anyhow::Result<Self> {
        let mut bytes = Vec::new();
        encode_request(&mut bytes, args);
        let at = bytes
            .windows(key.len())
            .position(|window| window == key)
            .context("an encoded request lost its key")?;
        Ok(Self {
            bytes,
            digits_at: at + KEY_PREFIX.len(),
        })
    }
}

/// Random GETs and SETs, appended to a buffer without allocating.
#[derive(Debug, Clone)]
pub(crate) struct Requests {
    get: Template,
    set: Template,
    keys: KeySpace,
    mix: Mix,
    rng: Rng,
}

impl Requests {
    pub(crate) fn new(keys: KeySpace, value: &[u8], mix: Mix) -> anyhow::Result<Self> {
        let key = keys.name(0);
        Ok(Self {
            get: Template::new(&[b"GET", &key], &key)?,
            set: Template::new(&[b"SET", &key, value], &key)?,
            keys,
            mix,
            rng: Rng::new(0),
        })
    }

    /// The longest request [`Self::push`] appends.
    pub(crate) fn max_len(&self) -> usize {
        self.get.bytes.len().max(self.set.bytes.len())
    }

    pub(crate) fn with_rng(&self, rng: Rng) -> Self {
        Self {
            rng,
            ..self.clone()
        }
    }

    /// Appends one request to `out`: a GET or SET of a random key, as the mix says.
    pub(crate) fn push(&mut self, out: &mut Vec<u8>) {
        let template = if self.mix.is_read(&mut self.rng) {
            &self.get
        } else {
            &self.set
        };
        let key = self.keys.pick(&mut self.rng);
        let start = out.len();
        out.extend_from_slice(&template.bytes);
        self.keys
            .write_digits(&mut out[start + template.digits_at..], key);
    }
}

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
    use larder_proto::resp::{Limits, parse_frame};

    use super::*;

    #[test]
    fn requests_are_templates_with_the_key_digits_replaced() {
        let keys = KeySpace::new(100);
        let mut get_only = Requests::new(keys, b"v", Mix::new(1.0)).unwrap();
        let mut out = Vec::new();
        get_only.push(&mut out);
        let (frame, used) = parse_frame(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, out.len());
        let args = frame.as_array().unwrap();
        assert_eq!(args[0].as_bytes(), Some(&b"GET"[..]));
        let key = args[1].as_bytes().unwrap();
        assert!(key.starts_with(b"key:") && key.len() == 6, "{key:?}");

        let mut set_only = get_only.with_rng(Rng::new(9));
        set_only.mix = Mix::new(0.0);
        out.clear();
        for _ in 0..3 {
            set_only.push(&mut out);
        }
        let (frame, used) = parse_frame(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, out.len() / 3);
        let args = frame.as_array().unwrap();
        assert_eq!(args.len(), 3);
        assert_eq!(args[2].as_bytes(), Some(&b"v"[..]));
    }

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
