//! Fuzzes the reply parsers: `parse_frame` and `frame_len` must agree on every input, and a
//! parsed frame written back with `Frame::encode` must parse again to the same bytes.

#![no_main]

use larder_proto::resp::{Limits, frame_len, parse_frame};
use libfuzzer_sys::fuzz_target;

/// Limits small enough for fuzzed input to reach every bound.
const TIGHT: Limits = Limits {
    max_bulk_len: 64,
    max_array_len: 8,
    max_inline_len: 64,
    max_depth: 4,
};

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), TIGHT] {
        let parsed = parse_frame(data, &limits);
        let measured = frame_len(data, &limits);
        assert_eq!(measured, parsed.clone().map(|p| p.map(|(_, len)| len)));
        let Ok(Some((frame, len))) = parsed else {
            continue;
        };
        assert!(len <= data.len());
        let mut first = Vec::new();
        frame.encode(&mut first);
        let Ok(Some((again, again_len))) = parse_frame(&first, &limits) else {
            panic!("re-encoded frame did not parse: {first:?}");
        };
        assert_eq!(again_len, first.len());
        let mut second = Vec::new();
        again.encode(&mut second);
        assert_eq!(first, second);
    }
});
