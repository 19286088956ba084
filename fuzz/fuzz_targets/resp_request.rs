//! Fuzzes the server's request parser: reads a pipeline from arbitrary bytes under the default
//! and under tight limits, checks every request's arguments can be read back, and checks that
//! the same bytes fed in two chunks (cut where the first byte says) or trickled a few bytes at a
//! time read the same requests. It also parses growing prefixes of the bytes with one `Args`,
//! stepping back now and then (a broken contract the parser must notice), and checks that every
//! outcome is the one a fresh parse of that prefix gives.

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

/// The outcome of one `parse_request` call, with the arguments read copied out.
type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, RespError>;

fn parse_owned(buf: &[u8], limits: &Limits, args: &mut Args) -> Parsed {
    let consumed = parse_request(buf, limits, args)?;
    Ok(consumed.map(|n| (args.iter(buf).map(<[u8]>::to_vec).collect(), n)))
}

/// Parses prefixes of `body`, `step` bytes longer each time, with one `Args`; every fourth time
/// also a prefix half as long, which the resumed state must notice. Each outcome must be the
/// one a fresh `Args` gives.
fn prefixes_like_fresh(body: &[u8], step: usize, limits: &Limits) {
    let mut args = Args::new();
    let mut len = 0;
    let mut round = 0_usize;
    while len < body.len() {
        len = (len + step).min(body.len());
        round += 1;
        let shorter = if round % 4 == 0 { len / 2 } else { len };
        for prefix in [&body[..len], &body[..shorter]] {
            let fresh = parse_owned(prefix, limits, &mut Args::new());
            assert_eq!(parse_owned(prefix, limits, &mut args), fresh);
        }
    }
}

/// Reads requests from `chunks` as a server reading a socket would; stops at the first error.
fn read<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    limits: &Limits,
) -> (Vec<Vec<Vec<u8>>>, Option<RespError>) {
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
    let step = usize::from(cut % 8) + 1;
    let cut = usize::from(cut).min(body.len());
    let (head, tail) = body.split_at(cut);
    for limits in [Limits::default(), TIGHT] {
        let whole = read([body], &limits);
        let split = read([head, tail], &limits);
        let trickled = read(body.chunks(step), &limits);
        // An error may surface a chunk earlier or later, but the requests before it are the same.
        for other in [split, trickled] {
            assert_eq!(whole.0, other.0);
            assert_eq!(whole.1.is_some(), other.1.is_some());
        }
        prefixes_like_fresh(body, step, &limits);
    }
});
