//! Fuzzes the gateway's HTTP/1.1 request framing: `parse_head` on any bytes either waits,
//! refuses, or returns a head no longer than its input, and never completes a head that
//! `may_complete_head` said more bytes could not complete; and the chunked decoder, fed the rest
//! in pieces of every size the input picks, never panics, never writes past its limit, and
//! decodes the same body however the input is split.

#![no_main]

use larder_proto::http1::{Chunked, headers, may_complete_head, parse_head};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut fields = headers();
    if let Ok(Some(head)) = parse_head(data, &mut fields) {
        assert!(head.len <= data.len());
    }
    // Cut where the first byte says: a partial prefix that may not complete stays unfinished.
    if let Some(&cut) = data.first() {
        let seen = usize::from(cut).min(data.len());
        let mut fields = headers();
        let partial = matches!(parse_head(&data[..seen], &mut fields), Ok(None));
        if seen > 0 && partial && !may_complete_head(data, seen) {
            let mut fields = headers();
            assert!(!matches!(parse_head(data, &mut fields), Ok(Some(_))));
        }
    }
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let whole = decode(body, body.len().max(1));
    let split = decode(body, usize::from(piece).max(1));
    assert_eq!(whole, split, "the split changed the outcome");
});

/// The decoded body and input used, or the error, feeding `input` in pieces of `piece` bytes.
fn decode(input: &[u8], piece: usize) -> Result<Option<(Vec<u8>, usize)>, larder_proto::http1::ChunkError> {
    let mut chunked = Chunked::default();
    let mut out = Vec::new();
    let mut used = 0;
    for part in input.chunks(piece) {
        let (n, done) = chunked.decode(part, &mut out, LIMIT)?;
        assert!(n <= part.len() && out.len() <= LIMIT);
        used += n;
        if done {
            return Ok(Some((out, used)));
        }
    }
    Ok(None)
}
