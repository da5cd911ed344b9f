//! Packet framing: the 4-byte header (3-byte little-endian length, 1-byte sequence id),
//! payloads of 2^24-1 bytes and more split into several frames and joined back, and the
//! length-encoded integers and strings used inside payloads.
//!
//! Implements <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html>
//! and <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html>.
//! Everything here is synchronous; [`crate::protocol::conn`] drives it over a socket.

use bytes::{BufMut, BytesMut};

/// Largest payload one frame can carry; a frame of exactly this length is continued by
/// the next frame (possibly an empty one).
pub const MAX_FRAME: usize = 0xFF_FFFF;
pub const HEADER_LEN: usize = 4;

/// Reads a frame header: `(payload length, sequence id)`.
#[inline]
pub fn parse_header(buf: &[u8]) -> Option<(usize, u8)> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let len = buf[0] as usize | (buf[1] as usize) << 8 | (buf[2] as usize) << 16;
    Some((len, buf[3]))
}

/// Appends `payload` to `out` as one logical packet, split into frames at exactly
/// [`MAX_FRAME`] bytes (with a trailing empty frame when the payload is a multiple of it).
/// `seq` is the id of the first frame; returns the next sequence id to use.
pub fn write_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    out.reserve(payload.len() + HEADER_LEN * (1 + payload.len() / MAX_FRAME));
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.put_uint_le(n as u64, 3);
        out.put_u8(seq);
        out.put_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            return seq;
        }
    }
}

/// Why a buffer could not yield a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The logical packet is larger than the allowed maximum.
    TooLarge { limit: usize },
    /// A continuation frame did not carry the next sequence id.
    OutOfOrder { expected: u8, got: u8 },
}

/// Result of looking for one whole logical packet at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// Not enough bytes yet; at least this many more are needed for progress.
    Incomplete,
    /// A whole logical packet: its first frame's sequence id, the sequence id of its last
    /// frame, the number of bytes it occupies in the buffer, and its payload length.
    Packet { seq: u8, last_seq: u8, wire_len: usize, payload_len: usize },
}

/// Looks for one whole logical packet at the start of `buf`, validating continuation
/// sequence ids and the size limit. Does not consume anything.
pub fn frame_packet(buf: &[u8], limit: usize) -> Result<Framed, FrameError> {
    let mut pos = 0;
    let mut total = 0usize;
    let mut first_seq = None;
    let mut last_seq = 0u8;
    loop {
        let Some((len, seq)) = parse_header(&buf[pos..]) else { return Ok(Framed::Incomplete) };
        match first_seq {
            None => first_seq = Some(seq),
            Some(_) => {
                let expected = last_seq.wrapping_add(1);
                if seq != expected {
                    return Err(FrameError::OutOfOrder { expected, got: seq });
                }
            }
        }
        last_seq = seq;
        total += len;
        if total > limit {
            return Err(FrameError::TooLarge { limit });
        }
        if buf.len() < pos + HEADER_LEN + len {
            return Ok(Framed::Incomplete);
        }
        pos += HEADER_LEN + len;
        if len < MAX_FRAME {
            return Ok(Framed::Packet {
                seq: first_seq.unwrap_or(seq),
                last_seq,
                wire_len: pos,
                payload_len: total,
            });
        }
    }
}

/// Copies the payload of a framed logical packet (as found by [`frame_packet`]) out of
/// `wire`, dropping the frame headers. Bytes that are not a whole framed packet yield
/// what they hold (never a panic).
pub fn join_payload(wire: &[u8], payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_len.min(wire.len()));
    let mut pos = 0;
    loop {
        let Some((len, _)) = wire.get(pos..).and_then(parse_header) else { return out };
        let Some(frame) = wire.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else { return out };
        out.extend_from_slice(frame);
        pos += HEADER_LEN + len;
        if len < MAX_FRAME {
            return out;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Payload reading and writing helpers.

/// A cursor over a payload that never panics: every read returns `None` past the end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.remaining() < n {
            return None;
        }
        let r = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(r)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Option<u32> {
        self.take(3).map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Option<u64> {
        // cannot fail: `take(8)` returned exactly eight bytes.
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// A length-encoded integer. `None` for the NULL marker (0xFB), the ERR/EOF markers
    /// (0xFF) or truncation.
    pub fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            b @ 0..=0xFA => Some(b as u64),
            0xFC => self.u16().map(u64::from),
            0xFD => self.u24().map(u64::from),
            0xFE => self.u64(),
            _ => None,
        }
    }
    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.take(usize::try_from(n).ok()?)
    }
    /// Bytes up to (not including) the next NUL, consuming the NUL.
    pub fn null_terminated(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        let n = rest.iter().position(|&b| b == 0)?;
        self.pos += n + 1;
        Some(&rest[..n])
    }
    /// Like [`Self::null_terminated`] but also accepts end-of-payload as the terminator.
    pub fn null_terminated_or_end(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(n) => {
                self.pos += n + 1;
                &rest[..n]
            }
            None => self.rest(),
        }
    }
}

pub fn put_lenenc(out: &mut impl BufMut, v: u64) {
    match v {
        0..=0xFA => out.put_u8(v as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(v as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_uint_le(v, 3);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(v);
        }
    }
}

pub fn put_lenenc_bytes(out: &mut impl BufMut, b: &[u8]) {
    put_lenenc(out, b.len() as u64);
    out.put_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_of(payload_len: usize) -> Vec<(usize, u8)> {
        let payload = vec![7u8; payload_len];
        let mut out = BytesMut::new();
        write_packet(&mut out, 3, &payload);
        let mut frames = vec![];
        let mut pos = 0;
        while pos < out.len() {
            let (len, seq) = parse_header(&out[pos..]).unwrap();
            frames.push((len, seq));
            pos += HEADER_LEN + len;
        }
        frames
    }

    #[test]
    fn payload_of_exactly_max_frame_gets_trailing_empty_frame() {
        assert_eq!(frames_of(MAX_FRAME), vec![(MAX_FRAME, 3), (0, 4)]);
    }

    #[test]
    fn payload_one_byte_under_max_frame_is_one_frame() {
        assert_eq!(frames_of(MAX_FRAME - 1), vec![(MAX_FRAME - 1, 3)]);
    }

    #[test]
    fn payload_over_two_frames_splits_at_exact_boundaries() {
        assert_eq!(frames_of(2 * MAX_FRAME + 5), vec![(MAX_FRAME, 3), (MAX_FRAME, 4), (5, 5)]);
        assert_eq!(frames_of(2 * MAX_FRAME), vec![(MAX_FRAME, 3), (MAX_FRAME, 4), (0, 5)]);
    }

    #[test]
    fn split_packet_is_joined_back_with_sequence_ids() {
        let payload: Vec<u8> = (0..MAX_FRAME + 10).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        let next = write_packet(&mut out, 0, &payload);
        assert_eq!(next, 2);
        match frame_packet(&out, usize::MAX).unwrap() {
            Framed::Packet { seq, last_seq, wire_len, payload_len } => {
                assert_eq!((seq, last_seq, wire_len, payload_len), (0, 1, out.len(), payload.len()));
                assert_eq!(join_payload(&out, payload_len), payload);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_packet_is_rejected_before_it_is_buffered_whole() {
        let mut out = BytesMut::new();
        write_packet(&mut out, 0, &vec![0u8; MAX_FRAME + 1]);
        // Only the first header and a little payload are present: the limit is still seen.
        assert_eq!(frame_packet(&out[..10], 1000), Err(FrameError::TooLarge { limit: 1000 }));
    }

    #[test]
    fn continuation_with_wrong_sequence_id_is_out_of_order() {
        let mut out = BytesMut::new();
        write_packet(&mut out, 0, &vec![0u8; MAX_FRAME + 1]);
        out[HEADER_LEN + MAX_FRAME + 3] = 9;
        assert_eq!(frame_packet(&out, usize::MAX), Err(FrameError::OutOfOrder { expected: 1, got: 9 }));
    }

    #[test]
    fn truncated_packet_is_incomplete() {
        let mut out = BytesMut::new();
        write_packet(&mut out, 0, b"hello");
        for cut in 0..out.len() {
            assert_eq!(frame_packet(&out[..cut], 100).unwrap(), Framed::Incomplete);
        }
    }

    proptest! {
        #[test]
        fn lenenc_roundtrips(v in any::<u64>()) {
            let mut out = BytesMut::new();
            put_lenenc(&mut out, v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc(), Some(v));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            while r.lenenc_bytes().is_some() {}
            let mut r = Reader::new(&data);
            let _ = r.null_terminated();
            let _ = r.u64();
        }
    }
}
