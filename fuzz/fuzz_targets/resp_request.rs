//! Fuzzes the server's request parser: reads a pipeline from arbitrary bytes under the default
//! and under tight limits, checks every request's arguments can be read back, and checks that
//! the same bytes fed in two chunks (cut where the first byte says) read the same requests.

#![no_main]

use larder_proto::resp::{Args, Limits, RespError, parse_request};
use libfuzzer_sys::fuzz_target;

/// Limits small enough for fuzzed input to reach every bound.
const TIGHT: Limits = Limits {
    max_bulk_len: 64,
    max_array_len: 8,
    max_inline_len: 64,
    max_depth: 4,
};

/// Reads requests from `chunks` as a server reading a socket would; stops at the first error.
fn read(chunks: &[&[u8]], limits: &Limits) -> (Vec<Vec<Vec<u8>>>, Option<RespError>) {
    let mut args = Args::new();
    let mut buffer = Vec::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match parse_request(&buffer, limits, &mut args) {
                Ok(Some(consumed)) => {
                    assert!(consumed > 0 && consumed <= buffer.len());
                    let request: Vec<Vec<u8>> = args.iter(&buffer).map(<[u8]>::to_vec).collect();
                    assert_eq!(request.len(), args.len());
                    requests.push(request);
                    buffer.drain(..consumed);
                }
                Ok(None) => break,
                Err(error) => return (requests, Some(error)),
            }
        }
    }
    (requests, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(body.len());
    let (head, tail) = body.split_at(cut);
    for limits in [Limits::default(), TIGHT] {
        let whole = read(&[body], &limits);
        let split = read(&[head, tail], &limits);
        // An error may surface a chunk earlier or later, but the requests before it are the same.
        assert_eq!(whole.0, split.0);
        assert_eq!(whole.1.is_some(), split.1.is_some());
    }
});
