//! Cuts the PCM stream into fixed-size chunks for the consumer (SPEC §2, WsForwarderActor).
//!
//! Each chunk carries its own position on the media timeline (`seq`, `pts_ms`) so that the
//! envelope can expose it and the replay buffer can reason about gaps, plus the earliest RTP
//! arrival instant of the audio it holds, from which the forwarder measures pipeline latency
//! (RTP arrival → WebSocket send) at the moment it sends the chunk.
//!
//! PCM is written straight into the chunk's little-endian byte buffer; a full buffer is frozen
//! into [`Bytes`] without copying, so there is one allocation per chunk and none per push.

use std::time::Instant;

use bytes::Bytes;

use crate::config::OutputFormat;

/// One chunk of s16le PCM ready to be wrapped by an envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// +1 per chunk, starting at 0 (or where [`Chunker::resume_at`] says).
    pub seq: u64,
    /// Media time of the chunk's first sample, in ms since the stream started.
    pub pts_ms: u64,
    /// Interleaved s16le PCM.
    pub pcm: Bytes,
    /// Frames (samples per channel) in `pcm`.
    pub frames: usize,
    /// Earliest RTP arrival among the pushes that contributed audio to this chunk
    /// (`None` when all of it was synthesised, e.g. concealment without an arrival).
    pub oldest_arrival: Option<Instant>,
}

/// Accumulates PCM and emits [`Chunk`]s of a fixed size. See the module docs.
#[derive(Debug)]
pub struct Chunker {
    sample_rate: u32,
    channels: usize,
    /// Bytes per full chunk (whole frames).
    chunk_bytes: usize,
    /// The chunk being filled.
    buf: Vec<u8>,
    oldest: Option<Instant>,
    seq: u64,
    /// Timeline origin: `pts = origin_ms + (frames_done - origin_frames) * 1000 / rate`,
    /// computed from totals so rounding never accumulates.
    origin_ms: u64,
    origin_frames: u64,
    /// Frames in all chunks emitted so far.
    frames_done: u64,
}

impl Chunker {
    /// Chunk size is `format.chunk_bytes()`, rounded down to whole frames (it is only ever
    /// fractional for odd combinations such as 22.05 kHz with 30 ms chunks).
    pub fn new(format: &OutputFormat) -> Self {
        let channels = usize::from(format.channels.max(1));
        let frame_bytes = 2 * channels;
        let chunk_bytes = (format.chunk_bytes() / frame_bytes).max(1) * frame_bytes;
        Self {
            sample_rate: format.sample_rate.max(1),
            channels,
            chunk_bytes,
            buf: Vec::with_capacity(chunk_bytes),
            oldest: None,
            seq: 0,
            origin_ms: 0,
            origin_frames: 0,
            frames_done: 0,
        }
    }

    /// Bytes in a full chunk.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// Sequence number the next emitted chunk will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Media time (ms) of the first sample of the next chunk.
    pub fn next_pts_ms(&self) -> u64 {
        self.pts_of(self.frames_done)
    }

    /// Frames buffered that do not fill a chunk yet.
    pub fn buffered_frames(&self) -> usize {
        self.buf.len() / (2 * self.channels)
    }

    /// Continues numbering from another run (restart, failover): the next chunk gets `seq`
    /// and starts at media time `pts_ms`. Audio already buffered belongs to that next chunk.
    pub fn resume_at(&mut self, seq: u64, pts_ms: u64) {
        self.seq = seq;
        self.origin_ms = pts_ms;
        self.origin_frames = self.frames_done;
    }

    /// Appends interleaved PCM (whole frames) and pushes every chunk that became full.
    /// `arrival` is the RTP arrival of the audio (for the latency measurement).
    pub fn push(&mut self, pcm: &[i16], arrival: Option<Instant>, out: &mut Vec<Chunk>) {
        let mut rest = pcm;
        while !rest.is_empty() {
            if let Some(at) = arrival {
                self.oldest = Some(self.oldest.map_or(at, |old| old.min(at)));
            }
            let room = (self.chunk_bytes - self.buf.len()) / 2;
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend(now.iter().flat_map(|s| s.to_le_bytes()));
            rest = later;
            if self.buf.len() == self.chunk_bytes {
                out.push(self.take_chunk());
            }
        }
    }

    /// Emits what is buffered as a short final chunk (at stop); `None` if nothing is.
    pub fn flush_partial(&mut self) -> Option<Chunk> {
        let frame_bytes = 2 * self.channels;
        // Never split a frame, even if a caller pushed a torn one.
        self.buf
            .truncate(self.buf.len() / frame_bytes * frame_bytes);
        (!self.buf.is_empty()).then(|| self.take_chunk())
    }

    fn take_chunk(&mut self) -> Chunk {
        let pcm = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_bytes));
        let frames = pcm.len() / (2 * self.channels);
        let chunk = Chunk {
            seq: self.seq,
            pts_ms: self.pts_of(self.frames_done),
            pcm: Bytes::from(pcm),
            frames,
            oldest_arrival: self.oldest.take(),
        };
        self.seq += 1;
        self.frames_done += frames as u64;
        chunk
    }

    fn pts_of(&self, frames: u64) -> u64 {
        self.origin_ms + (frames - self.origin_frames) * 1000 / u64::from(self.sample_rate)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn format(rate: u32, channels: u16, chunk_ms: u32) -> OutputFormat {
        OutputFormat {
            sample_rate: rate,
            channels,
            chunk_ms,
            ..OutputFormat::default()
        }
    }

    #[test]
    fn default_chunks_are_6400_bytes_with_seq_and_pts() {
        let mut c = Chunker::new(&OutputFormat::default());
        assert_eq!(c.chunk_bytes(), 6_400);
        let mut out = Vec::new();
        // 1 s of 16 kHz mono in 20 ms pushes.
        let pcm: Vec<i16> = (0..16_000).map(|i| (i % 1000) as i16).collect();
        for piece in pcm.chunks(320) {
            c.push(piece, None, &mut out);
        }
        assert_eq!(out.len(), 5);
        for (i, chunk) in out.iter().enumerate() {
            assert_eq!(chunk.seq, i as u64);
            assert_eq!(chunk.pts_ms, 200 * i as u64);
            assert_eq!(chunk.frames, 3_200);
            assert_eq!(chunk.pcm.len(), 6_400);
        }
        // Bytes are s16le of the input, in order.
        let all: Vec<i16> = out
            .iter()
            .flat_map(|c| {
                c.pcm
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
            })
            .collect();
        assert_eq!(all, pcm);
        assert_eq!(c.next_seq(), 5);
        assert_eq!(c.next_pts_ms(), 1_000);
    }

    #[test]
    fn big_push_spans_several_chunks_and_partial_flush() {
        let mut c = Chunker::new(&format(8_000, 2, 20)); // 160 frames = 640 bytes
        let mut out = Vec::new();
        let pcm = vec![-2i16; 2 * 400];
        c.push(&pcm, None, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(c.buffered_frames(), 80);
        let last = c.flush_partial().unwrap();
        assert_eq!((last.seq, last.pts_ms, last.frames), (2, 40, 80));
        assert_eq!(last.pcm.len(), 320);
        assert_eq!(&last.pcm[..4], &[0xfe, 0xff, 0xfe, 0xff]);
        assert!(c.flush_partial().is_none());
        // The next chunk continues the timeline after the partial one (50 ms).
        c.push(&vec![0; 2 * 160], None, &mut out);
        assert_eq!((out[2].seq, out[2].pts_ms), (3, 50));
    }

    #[test]
    fn pts_does_not_drift_at_44_1k() {
        // pts is computed from the frame total, so 100 chunks later it is still exact.
        let mut c = Chunker::new(&format(44_100, 1, 30));
        let mut out = Vec::new();
        c.push(&vec![1; 44_100 * 3], None, &mut out);
        assert_eq!(out.len(), 100);
        assert_eq!(out[99].pts_ms, 2_970);
        assert!(out.iter().all(|ch| ch.frames == 1_323));
    }

    #[test]
    fn odd_chunk_bytes_are_rounded_to_frames() {
        // 22.05 kHz, 30 ms: chunk_bytes() = 1323, which is not whole s16 frames.
        let f = format(22_050, 1, 30);
        assert_eq!(f.chunk_bytes(), 1_323);
        let c = Chunker::new(&f);
        assert_eq!(c.chunk_bytes(), 1_322);
    }

    #[test]
    fn oldest_arrival_is_the_earliest_contributor() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(20);
        let t2 = t0 + Duration::from_millis(40);
        let mut c = Chunker::new(&format(16_000, 1, 20)); // 320 frames
        let mut out = Vec::new();
        c.push(&[0; 200], Some(t1), &mut out);
        c.push(&[0; 100], None, &mut out);
        c.push(&[0; 100], Some(t0), &mut out); // completes chunk 0, 80 frames spill over
        c.push(&[0; 240], Some(t2), &mut out); // completes chunk 1
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].oldest_arrival, Some(t0));
        // Chunk 1 holds the tail of the t0 push, so t0 is still its earliest arrival.
        assert_eq!(out[1].oldest_arrival, Some(t0));
        c.push(&[0; 320], None, &mut out);
        assert_eq!(out[2].oldest_arrival, None);
    }

    #[test]
    fn resume_continues_numbering() {
        let mut c = Chunker::new(&OutputFormat::default());
        c.resume_at(41, 8_200);
        let mut out = Vec::new();
        c.push(&vec![0; 3_200 * 2], None, &mut out);
        assert_eq!((out[0].seq, out[0].pts_ms), (41, 8_200));
        assert_eq!((out[1].seq, out[1].pts_ms), (42, 8_400));
        assert_eq!(c.next_seq(), 43);
    }
}
