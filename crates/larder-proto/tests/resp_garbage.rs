//! Hostile input for the RESP parsers: arbitrary bytes, valid pipelines split at arbitrary
//! points, and valid frames with a few bytes changed. Every parser must return (never panic),
//! `parse_frame` and `frame_len` must agree, and a pipeline must parse to the same requests
//! however its bytes are chunked.

#![allow(clippy::unwrap_used)]

use larder_proto::resp::{
    Args, Frame, Limits, RespError, encode_request, frame_len, parse_frame, parse_request,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Limits small enough for random input to hit every bound.
fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 40,
        max_array_len: 6,
        max_inline_len: 48,
        max_depth: 3,
    }
}

/// Runs every parser over `buf` and checks what must hold for any input.
fn feed_all(buf: &[u8], limits: &Limits) {
    let mut args = Args::new();
    let mut rest = buf;
    while let Ok(Some(consumed)) = parse_request(rest, limits, &mut args) {
        assert!(consumed > 0 && consumed <= rest.len());
        for index in 0..args.len() {
            assert!(args.get(rest, index).is_some());
        }
        rest = &rest[consumed..];
    }

    let parsed = parse_frame(buf, limits);
    let measured = frame_len(buf, limits);
    assert_eq!(measured, parsed.clone().map(|p| p.map(|(_, len)| len)));
    if let Ok(Some((frame, len))) = parsed {
        assert!(len <= buf.len());
        assert_reencodes(&frame, limits);
    }
}

/// A parsed frame, written back and parsed again, gives the same bytes (compared as bytes so
/// that a NaN double still counts as equal to itself).
fn assert_reencodes(frame: &Frame, limits: &Limits) {
    let mut first = Vec::new();
    frame.encode(&mut first);
    let (again, len) = parse_frame(&first, limits).unwrap().unwrap();
    assert_eq!(len, first.len());
    let mut second = Vec::new();
    again.encode(&mut second);
    assert_eq!(first, second);
}

/// Bytes drawn mostly from RESP's own alphabet, so random input gets past the first header.
fn resp_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"*$+-:_,#(!=%~|>\r\n\r\n0123456789-?tfx \"'\\".to_vec();
    vec(
        prop_oneof![4 => prop::sample::select(alphabet), 1 => any::<u8>()],
        0..256,
    )
}

/// A request: one to five arguments of arbitrary bytes.
fn request() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(
        prop_oneof![
            vec(any::<u8>(), 0..12),
            "[a-zA-Z0-9]{1,8}".prop_map(String::into_bytes)
        ],
        1..5,
    )
}

/// How a request is written on the wire.
#[derive(Debug, Clone, Copy)]
enum Form {
    Array,
    InlineCrlf,
    InlineLf,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Array),
        Just(Form::InlineCrlf),
        Just(Form::InlineLf)
    ]
}

/// Writes `args` as an inline command: plain words bare, anything else double-quoted with
/// `\xHH` escapes for bytes that are not printable.
fn encode_inline(out: &mut Vec<u8>, args: &[Vec<u8>], line_end: &[u8]) {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if !arg.is_empty() && arg.iter().all(u8::is_ascii_alphanumeric) {
            out.extend_from_slice(arg);
            continue;
        }
        out.push(b'"');
        for &byte in arg {
            if (byte.is_ascii_graphic() && byte != b'"' && byte != b'\\') || byte == b' ' {
                out.push(byte);
            } else {
                out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(line_end);
}

fn encode_pipeline(requests: &[(Vec<Vec<u8>>, Form)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (args, form) in requests {
        match form {
            Form::Array => {
                let slices: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                encode_request(&mut out, &slices);
            }
            Form::InlineCrlf => encode_inline(&mut out, args, b"\r\n"),
            Form::InlineLf => encode_inline(&mut out, args, b"\n"),
        }
    }
    out
}

/// Feeds `wire` to `parse_request` in chunks cut at `cuts`, as a server reading from a socket
/// would, and returns the requests read. One `Args` serves every call, so a request cut short
/// is resumed from where the previous call stopped, not parsed again.
fn read_in_chunks(wire: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let limits = Limits::default();
    let mut args = Args::new();
    let mut buffer = Vec::new();
    let mut requests = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    let mut from = 0;
    for cut in cuts {
        buffer.extend_from_slice(&wire[from..cut]);
        from = cut;
        while let Some(consumed) = parse_request(&buffer, &limits, &mut args).unwrap() {
            requests.push(args.iter(&buffer).map(<[u8]>::to_vec).collect());
            buffer.drain(..consumed);
        }
    }
    assert!(buffer.is_empty(), "bytes left over: {buffer:?}");
    requests
}

/// The outcome of `parse_request` with the arguments read copied out.
type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, RespError>;

fn parse_owned(buf: &[u8], limits: &Limits, args: &mut Args) -> Parsed {
    let consumed = parse_request(buf, limits, args)?;
    Ok(consumed.map(|n| (args.iter(buf).map(<[u8]>::to_vec).collect(), n)))
}

/// Any frame the encoder can write (doubles without NaN, so frames compare equal).
fn frame() -> impl Strategy<Value = Frame> {
    let line = || "[a-zA-Z0-9 :._-]{0,12}".prop_map(String::into_bytes);
    let leaf = prop_oneof![
        line().prop_map(Frame::Simple),
        line().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        vec(any::<u8>(), 0..24).prop_map(Frame::Bulk),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |v| !v.is_nan())
            .prop_map(Frame::Double),
        "-?[1-9][0-9]{0,30}".prop_map(|digits| Frame::BigNumber(digits.into_bytes())),
        vec(any::<u8>(), 0..24).prop_map(Frame::BulkError),
        (prop::array::uniform3(b'a'..=b'z'), vec(any::<u8>(), 0..24))
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Frame::Array),
            vec(inner.clone(), 0..4).prop_map(Frame::Set),
            vec(inner.clone(), 0..4).prop_map(Frame::Push),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Frame::Map),
            (vec((inner.clone(), inner.clone()), 0..3), inner).prop_map(|(attributes, value)| {
                Frame::Attribute {
                    attributes,
                    value: Box::new(value),
                }
            }),
        ]
    })
}

/// One edit to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        let len = bytes.len();
        match *mutation {
            Mutation::Replace(at, byte) if len > 0 => bytes[at % len] = byte,
            Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
            Mutation::Remove(at) if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        feed_all(&bytes, &Limits::default());
        feed_all(&bytes, &small_limits());
    }

    #[test]
    fn resp_like_bytes_never_panic(bytes in resp_ish_bytes()) {
        feed_all(&bytes, &Limits::default());
        feed_all(&bytes, &small_limits());
    }

    #[test]
    fn a_split_pipeline_reads_like_the_whole(
        requests in vec((request(), form()), 1..8),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let wire = encode_pipeline(&requests);
        let expected: Vec<Vec<Vec<u8>>> = requests.into_iter().map(|(args, _)| args).collect();
        prop_assert_eq!(read_in_chunks(&wire, &[]), expected.clone());
        prop_assert_eq!(read_in_chunks(&wire, &cuts), expected);
    }

    #[test]
    fn a_pipeline_fed_byte_by_byte_reads_like_the_whole(requests in vec((request(), form()), 1..4)) {
        let wire = encode_pipeline(&requests);
        let every_byte: Vec<usize> = (0..wire.len()).collect();
        let expected: Vec<Vec<Vec<u8>>> = requests.into_iter().map(|(args, _)| args).collect();
        prop_assert_eq!(read_in_chunks(&wire, &every_byte), expected);
    }

    #[test]
    fn prefixes_in_any_order_with_one_args_read_like_a_fresh_parse(
        request in vec(vec(any::<u8>(), 0..12), 1..40),
        cuts in vec(any::<usize>(), 1..16),
        limits in prop_oneof![Just(Limits::default()), Just(small_limits())],
    ) {
        let slices: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        let mut wire = Vec::new();
        encode_request(&mut wire, &slices);
        // Growing prefixes resume; a shorter one breaks the caller's contract and must be
        // noticed, and a complete one must leave the `Args` ready for the next.
        let mut args = Args::new();
        for cut in cuts {
            let prefix = &wire[..cut % (wire.len() + 1)];
            let fresh = parse_owned(prefix, &limits, &mut Args::new());
            prop_assert_eq!(parse_owned(prefix, &limits, &mut args), fresh);
        }
    }

    #[test]
    fn another_buffer_after_a_partial_request_never_panics(
        request in vec(vec(any::<u8>(), 0..12), 2..10),
        cut in any::<usize>(),
        mutations in vec(mutation(), 1..4),
    ) {
        let slices: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        let mut wire = Vec::new();
        encode_request(&mut wire, &slices);
        // Mostly the same header and line ends, so the changed bytes often go unnoticed.
        let mut other = wire.clone();
        mutate(&mut other, &mutations);
        let limits = Limits::default();
        let mut args = Args::new();
        let _ = parse_request(&wire[..cut % wire.len()], &limits, &mut args);
        if let Ok(Some(consumed)) = parse_request(&other, &limits, &mut args) {
            prop_assert!(consumed > 0 && consumed <= other.len());
            for index in 0..args.len() {
                prop_assert!(args.get(&other, index).is_some());
            }
        }
    }

    #[test]
    fn mutated_pipelines_never_panic(
        requests in vec((request(), form()), 1..6),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut wire = encode_pipeline(&requests);
        mutate(&mut wire, &mutations);
        feed_all(&wire, &Limits::default());
        feed_all(&wire, &small_limits());
    }

    #[test]
    fn frames_round_trip(frame in frame()) {
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        prop_assert_eq!(parse_frame(&wire, &Limits::default()), Ok(Some((frame, wire.len()))));
        prop_assert_eq!(frame_len(&wire, &Limits::default()), Ok(Some(wire.len())));
        for cut in 0..wire.len() {
            prop_assert_eq!(frame_len(&wire[..cut], &Limits::default()), Ok(None));
        }
    }

    #[test]
    fn mutated_frames_never_panic(frame in frame(), mutations in vec(mutation(), 1..4)) {
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        mutate(&mut wire, &mutations);
        feed_all(&wire, &Limits::default());
        feed_all(&wire, &small_limits());
    }
}
