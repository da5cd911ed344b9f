//! Micro-benchmarks of the synchronous protocol code: packet framing
//! (`sluice::protocol::packet`) and the response tracker that finds where a backend's
//! response ends (`sluice::protocol::response`).
//!
//! Run with `cargo bench -p sluice-proxy --bench framing` (about a minute). Every group is
//! kept short on purpose (small sample sizes, ~2 s of measurement); the numbers are for
//! spotting regressions and orders of magnitude, not for fine comparisons.
//! See docs/benchmarks.md.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::protocol::constants::{cap, status};
use sluice::protocol::packet::{
    frame_packet, join_payload, put_lenenc, put_lenenc_bytes, write_packet, Framed, Reader, MAX_FRAME,
};
use sluice::protocol::response::{Event, Expect, ResponseTracker};

/// Capabilities of a typical backend connection from Sluice to MariaDB: classic EOF
/// packets after column definitions and at the end of rows.
const EOF_CAPS: u32 = cap::PROTOCOL_41
    | cap::SECURE_CONNECTION
    | cap::TRANSACTIONS
    | cap::MULTI_RESULTS
    | cap::PS_MULTI_RESULTS
    | cap::SESSION_TRACK
    | cap::PLUGIN_AUTH;
/// The same with CLIENT_DEPRECATE_EOF (result sets end with a 0xFE-headed OK).
const DEP_CAPS: u32 = EOF_CAPS | cap::DEPRECATE_EOF;

const READ_CHUNK: usize = 64 * 1024;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
}

// ---------------------------------------------------------------------------------------
// Building realistic wire data.

/// A byte stream of packets with running sequence ids, as a server would send it.
struct Wire {
    buf: BytesMut,
    seq: u8,
}

impl Wire {
    fn new(first_seq: u8) -> Self {
        Wire { buf: BytesMut::new(), seq: first_seq }
    }
    fn packet(&mut self, payload: &[u8]) -> &mut Self {
        self.seq = write_packet(&mut self.buf, self.seq, payload);
        self
    }
    fn column_count(&mut self, n: u64) -> &mut Self {
        let mut p = BytesMut::new();
        put_lenenc(&mut p, n);
        self.packet(&p)
    }
    /// A column definition (Protocol::ColumnDefinition41) of table `sbtest.sbtest1`.
    fn column_def(&mut self, name: &str, charset: u16, length: u32, ty: u8, flags: u16) -> &mut Self {
        let mut p = BytesMut::new();
        for s in ["def", "sbtest", "sbtest1", "sbtest1", name, name] {
            put_lenenc_bytes(&mut p, s.as_bytes());
        }
        p.put_u8(0x0c);
        p.put_u16_le(charset);
        p.put_u32_le(length);
        p.put_u8(ty);
        p.put_u16_le(flags);
        p.put_u8(0); // decimals
        p.put_u16_le(0); // filler
        self.packet(&p)
    }
    /// An intermediate EOF (or nothing under DEPRECATE_EOF) after column definitions.
    fn columns_end(&mut self, caps: u32) -> &mut Self {
        if caps & cap::DEPRECATE_EOF == 0 {
            self.eof(status::AUTOCOMMIT);
        }
        self
    }
    fn eof(&mut self, st: u16) -> &mut Self {
        let mut p = vec![0xFE, 0, 0];
        p.extend_from_slice(&st.to_le_bytes());
        self.packet(&p)
    }
    /// The end of a result set: EOF, or a 0xFE-headed OK under DEPRECATE_EOF.
    fn rows_end(&mut self, caps: u32) -> &mut Self {
        if caps & cap::DEPRECATE_EOF == 0 {
            self.eof(status::AUTOCOMMIT)
        } else {
            let mut p = vec![0xFE, 0, 0];
            p.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
            p.extend_from_slice(&[0, 0]);
            self.packet(&p)
        }
    }
}

const MYSQL_TYPE_LONG: u8 = 0x03;
const MYSQL_TYPE_STRING: u8 = 0xFE;
const BINARY_CHARSET: u16 = 63;
const UTF8MB4_CHARSET: u16 = 45;

/// A sysbench `c` value: 11 groups of 11 digits separated by dashes (119 characters).
fn c_value(i: u64) -> Vec<u8> {
    let mut s = String::with_capacity(120);
    for g in 0..11u64 {
        if g > 0 {
            s.push('-');
        }
        s.push_str(&format!("{:011}", (i * 2_654_435_761 + g * 40_503) % 100_000_000_000));
    }
    s.into_bytes()
}

/// A sysbench `pad` value: 5 groups of 11 digits (59 characters).
fn pad_value(i: u64) -> Vec<u8> {
    c_value(i)[..59].to_vec()
}

/// The response to sysbench's point select, `SELECT c FROM sbtest1 WHERE id=?`, as a text
/// result set (COM_QUERY): column count, one column definition, one row, terminator.
fn point_select_text(caps: u32) -> Vec<u8> {
    let mut w = Wire::new(1);
    w.column_count(1).column_def("c", UTF8MB4_CHARSET, 480, MYSQL_TYPE_STRING, 0).columns_end(caps);
    let mut row = BytesMut::new();
    put_lenenc_bytes(&mut row, &c_value(42));
    w.packet(&row).rows_end(caps);
    w.buf.to_vec()
}

/// The same response as a binary result set (COM_STMT_EXECUTE): the row has a 0x00
/// header and a NULL bitmap.
fn point_select_binary(caps: u32) -> Vec<u8> {
    let mut w = Wire::new(1);
    w.column_count(1).column_def("c", UTF8MB4_CHARSET, 480, MYSQL_TYPE_STRING, 0).columns_end(caps);
    let mut row = BytesMut::new();
    row.put_u8(0x00);
    row.put_u8(0x00); // NULL bitmap for one column (offset 2)
    put_lenenc_bytes(&mut row, &c_value(42));
    w.packet(&row).rows_end(caps);
    w.buf.to_vec()
}

/// `SELECT id, k, c, pad FROM sbtest1` over `rows` rows, as a text result set
/// (about 190 bytes per row on the wire).
fn full_scan_text(rows: u64, caps: u32) -> Vec<u8> {
    let mut w = Wire::new(1);
    w.column_count(4)
        .column_def("id", BINARY_CHARSET, 11, MYSQL_TYPE_LONG, 0x4203)
        .column_def("k", BINARY_CHARSET, 11, MYSQL_TYPE_LONG, 0x1009)
        .column_def("c", UTF8MB4_CHARSET, 480, MYSQL_TYPE_STRING, 0x1001)
        .column_def("pad", UTF8MB4_CHARSET, 240, MYSQL_TYPE_STRING, 0x1001)
        .columns_end(caps);
    let mut row = BytesMut::new();
    for i in 1..=rows {
        row.clear();
        put_lenenc_bytes(&mut row, i.to_string().as_bytes());
        put_lenenc_bytes(&mut row, ((i * 7919) % 10_000).to_string().as_bytes());
        put_lenenc_bytes(&mut row, &c_value(i));
        put_lenenc_bytes(&mut row, &pad_value(i));
        w.packet(&row);
    }
    w.rows_end(caps);
    w.buf.to_vec()
}

/// Follows one response the way a session does: bytes arrive `chunk` at a time, the
/// tracker consumes what it can (everything consumed may be forwarded), and what it could
/// not judge yet stays at the front of the buffer. Returns the bytes consumed.
fn track(expect: Expect, caps: u32, wire: &[u8], chunk: usize) -> usize {
    let mut t = ResponseTracker::new(expect, caps);
    let mut consumed = 0;
    let mut avail = 0;
    loop {
        avail = (avail + chunk).min(wire.len());
        let (n, ev) = t.advance(&wire[consumed..avail]).expect("well-formed response");
        consumed += n;
        match ev {
            Event::Done => return consumed,
            Event::More if avail == wire.len() && n == 0 => panic!("response did not end"),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Benchmarks.

fn bench_write_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("write_packet");
    let small = b"\x03SELECT c FROM sbtest1 WHERE id=4242".to_vec();
    let big = vec![0x5Au8; MAX_FRAME + 1024]; // two frames
    for (name, payload, samples) in [("small_37B", &small, 20), ("16MiB_plus_1KiB", &big, 10)] {
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.sample_size(samples);
        let mut out = BytesMut::with_capacity(payload.len() + 64);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let next = write_packet(&mut out, 0, black_box(payload));
                black_box((next, out.len()))
            })
        });
    }
    g.finish();
}

fn bench_frame_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_packet");
    let mut small = BytesMut::new();
    write_packet(&mut small, 0, b"\x03SELECT c FROM sbtest1 WHERE id=4242");
    // A logical packet of 2 x 16 MiB: three frames (MAX_FRAME, MAX_FRAME, 10 bytes).
    let mut split = BytesMut::new();
    let split_payload: Vec<u8> = (0..2 * MAX_FRAME + 10).map(|i| i as u8).collect();
    write_packet(&mut split, 0, &split_payload);
    drop(split_payload);

    g.throughput(Throughput::Elements(1));
    g.bench_function("small_37B", |b| {
        b.iter(|| match frame_packet(black_box(&small), 64 << 20) {
            Ok(Framed::Packet { wire_len, .. }) => wire_len,
            other => panic!("{other:?}"),
        })
    });
    g.bench_function("split_2x16MiB_headers_only", |b| {
        b.iter(|| match frame_packet(black_box(&split), 64 << 20) {
            Ok(Framed::Packet { payload_len, .. }) => payload_len,
            other => panic!("{other:?}"),
        })
    });
    // Framing plus copying the payload out without its headers (tens of ms per copy).
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(split.len() as u64));
    g.bench_function("split_2x16MiB_frame_and_join", |b| {
        b.iter(|| match frame_packet(black_box(&split), 64 << 20) {
            Ok(Framed::Packet { payload_len, .. }) => join_payload(&split, payload_len).len(),
            other => panic!("{other:?}"),
        })
    });
    g.finish();
}

fn bench_lenenc(c: &mut Criterion) {
    let mut g = c.benchmark_group("lenenc");
    // A mix of the four encodings, weighted towards small values as in real payloads.
    let values: Vec<u64> = (0..1000u64)
        .map(|i| match i % 10 {
            0..=5 => i % 251,
            6 | 7 => 300 + i * 13,
            8 => 70_000 + i * 1000,
            _ => 1 << 40 | i,
        })
        .collect();
    let mut encoded = BytesMut::new();
    for &v in &values {
        put_lenenc(&mut encoded, v);
    }
    g.throughput(Throughput::Elements(values.len() as u64));
    let mut out = BytesMut::with_capacity(encoded.len());
    g.bench_function("put_1000", |b| {
        b.iter(|| {
            out.clear();
            for &v in black_box(&values) {
                put_lenenc(&mut out, v);
            }
            out.len()
        })
    });
    g.bench_function("read_1000", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&encoded));
            let mut sum = 0u64;
            while let Some(v) = r.lenenc() {
                sum = sum.wrapping_add(v);
            }
            sum
        })
    });
    g.finish();
}

fn bench_tracker_point_select(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracker_point_select");
    let cases = [
        ("text_eof", Expect::Query, EOF_CAPS, point_select_text(EOF_CAPS)),
        ("text_deprecate_eof", Expect::Query, DEP_CAPS, point_select_text(DEP_CAPS)),
        ("binary_eof", Expect::Execute, EOF_CAPS, point_select_binary(EOF_CAPS)),
    ];
    for (name, expect, caps, wire) in &cases {
        assert_eq!(track(*expect, *caps, wire, wire.len()), wire.len());
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_with_input(BenchmarkId::new(*name, format!("{}B", wire.len())), wire, |b, wire| {
            b.iter(|| track(*expect, *caps, black_box(wire), wire.len()))
        });
    }
    g.finish();
}

fn bench_tracker_large_result(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracker_10k_rows");
    g.sample_size(20);
    for (name, caps) in [("text_eof_64KiB_chunks", EOF_CAPS), ("text_deprecate_eof_64KiB_chunks", DEP_CAPS)] {
        let wire = full_scan_text(10_000, caps);
        assert_eq!(track(Expect::Query, caps, &wire, READ_CHUNK), wire.len());
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_with_input(BenchmarkId::new(name, format!("{}B", wire.len())), &wire, |b, wire| {
            b.iter(|| track(Expect::Query, caps, black_box(wire), READ_CHUNK))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_write_packet, bench_frame_packet, bench_lenenc, bench_tracker_point_select, bench_tracker_large_result
}
criterion_main!(benches);
