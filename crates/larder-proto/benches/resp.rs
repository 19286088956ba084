//! RESP codec benchmarks: the server's request parser over pipelines of 16 `GET` and 16 `SET`
//! requests, the reply encoder over 16 bulk replies, and the client's frame scanners over the
//! same replies. Throughput is in requests (or replies), so criterion's elements/s is per request.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use larder_proto::resp::{
    Args, Limits, encode, encode_request, frame_len, parse_frame, parse_request,
};

const PIPELINE: usize = 16;

/// `PIPELINE` copies of the request `args`, back to back.
fn pipeline(args: &[&[u8]]) -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..PIPELINE {
        encode_request(&mut wire, args);
    }
    wire
}

/// Parses every request in `wire`, as the server's read loop does, and returns the arguments
/// seen so the work cannot be optimised away.
fn parse_all(wire: &[u8], limits: &Limits, args: &mut Args) -> usize {
    let mut rest = wire;
    let mut seen = 0;
    while let Ok(Some(consumed)) = parse_request(rest, limits, args) {
        seen += args.get(rest, args.len() - 1).map_or(0, <[u8]>::len);
        rest = rest.get(consumed..).unwrap_or_default();
    }
    seen
}

fn requests(c: &mut Criterion) {
    let limits = Limits::default();
    let value = [b'v'; 32];
    let cases = [
        ("get", pipeline(&[b"GET", b"key:000123"])),
        ("set_32b", pipeline(&[b"SET", b"key:000123", &value])),
        ("get_inline", b"GET key:000123\r\n".repeat(PIPELINE)),
    ];
    let mut group = c.benchmark_group("parse_request_x16");
    group.throughput(Throughput::Elements(PIPELINE as u64));
    for (name, wire) in &cases {
        let mut args = Args::new();
        group.bench_function(*name, |b| {
            b.iter(|| parse_all(black_box(wire), &limits, &mut args));
        });
    }
    group.finish();
}

fn replies(c: &mut Criterion) {
    let value = [b'v'; 32];
    let limits = Limits::default();
    let mut group = c.benchmark_group("replies_x16");
    group.throughput(Throughput::Elements(PIPELINE as u64));
    let mut out = Vec::with_capacity(4096);
    group.bench_function("encode_bulk_32b", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..PIPELINE {
                encode::bulk(&mut out, black_box(&value));
            }
            out.len()
        });
    });
    let wire = out.clone();
    group.bench_function("frame_len_bulk_32b", |b| {
        b.iter(|| {
            let mut rest = black_box(&wire[..]);
            while let Ok(Some(len)) = frame_len(rest, &limits) {
                rest = rest.get(len..).unwrap_or_default();
            }
        });
    });
    group.bench_function("parse_frame_bulk_32b", |b| {
        b.iter(|| {
            let mut rest = black_box(&wire[..]);
            while let Ok(Some((frame, len))) = parse_frame(rest, &limits) {
                black_box(frame);
                rest = rest.get(len..).unwrap_or_default();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
