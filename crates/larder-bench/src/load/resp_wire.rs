//! What a RESP connection of the load generator writes: requests pre-encoded once as templates
//! whose key digits are overwritten in place.

use larder_proto::resp::encode_request;

use super::keys::{KEY_PREFIX, KeySpace, Mix, Rng};
use crate::error::{Error, Result};

/// A pre-encoded request and where its key's digits sit in it.
#[derive(Debug, Clone)]
struct Template {
    bytes: Vec<u8>,
    digits_at: usize,
}

impl Template {
    fn new(args: &[&[u8]], key: &[u8]) -> Result<Self> {
        let mut bytes = Vec::new();
        encode_request(&mut bytes, args);
        let at = bytes
            .windows(key.len())
            .position(|window| window == key)
            .ok_or(Error::Internal("an encoded request lost its key"))?;
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
    pub(crate) fn new(keys: KeySpace, value: &[u8], mix: Mix) -> Result<Self> {
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
}
