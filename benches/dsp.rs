//! DSP cost per 20 ms Opus frame for each conversion path (SPEC §9).
//!
//! The source is what SRS relays from a browser: Opus 48 kHz stereo, 20 ms frames. The frames
//! are encoded once in setup; each iteration pushes the next RTP packet of an endless stream
//! (sequence and timestamp keep advancing, so the decoder never sees a discontinuity).
//!
//! Run: `cargo bench --bench dsp -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::f32::consts::TAU;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use opus::{Application, Channels, Encoder};
use whep_bridge::config::{EnvelopeKind, OutputFormat};
use whep_bridge::output::chunker::{Chunk, Chunker};
use whep_bridge::output::envelope::{EnvelopeEncoder, StreamIdentity};
use whep_bridge::pipeline::decoder::{DecoderConfig, DecoderCore};
use whep_bridge::pipeline::packet::RtpPacket;
use whep_bridge::pipeline::resampler::ResamplerCore;

/// Counts heap allocations, to check that the per-frame paths do not allocate.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Heap allocations made by `n` runs of `f` after 100 warm-up runs.
fn allocations_per_run(n: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..100 {
        f();
    }
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..n {
        f();
    }
    (ALLOCATIONS.load(Relaxed) - before) as f64 / n as f64
}

/// One second of music-like stereo audio (two tones per channel plus a little noise),
/// encoded as a browser would: 48 kHz stereo, 20 ms frames, 64 kbit/s.
fn encode_source() -> Vec<Bytes> {
    let mut enc = Encoder::new(48_000, Channels::Stereo, Application::Audio).expect("encoder");
    enc.set_bitrate(opus::Bitrate::Bits(64_000))
        .expect("bitrate");
    let mut frame = vec![0i16; 960 * 2];
    let mut n = 0u32;
    let mut noise = 0x1234_5678u32;
    (0..50)
        .map(|_| {
            for f in frame.chunks_mut(2) {
                let t = n as f32 / 48_000.0;
                noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let hiss = (noise >> 16) as f32 / 65_536.0 - 0.5;
                let l = (TAU * 220.0 * t).sin() * 6_000.0 + (TAU * 1_250.0 * t).sin() * 2_000.0;
                let r = (TAU * 330.0 * t).sin() * 6_000.0 + (TAU * 2_500.0 * t).sin() * 1_500.0;
                f[0] = (l + hiss * 600.0) as i16;
                f[1] = (r + hiss * 600.0) as i16;
                n += 1;
            }
            Bytes::from(enc.encode_vec(&frame, 4_000).expect("encode"))
        })
        .collect()
}

/// An endless RTP stream over the encoded frames.
struct Stream {
    frames: Vec<Bytes>,
    index: usize,
    arrival: Instant,
}

impl Stream {
    fn next_packet(&mut self) -> RtpPacket {
        let i = self.index;
        self.index += 1;
        RtpPacket {
            seq: i as u16,
            timestamp: (i as u32).wrapping_mul(960),
            payload: self.frames[i % self.frames.len()].clone(),
            arrival: self.arrival,
        }
    }
}

fn decoder(rate: u32, channels: u16) -> DecoderCore {
    DecoderCore::new(DecoderConfig {
        rate,
        channels,
        ..DecoderConfig::default()
    })
    .expect("decoder")
}

fn bench_paths(c: &mut Criterion) {
    let frames = encode_source();
    let stream = || Stream {
        frames: frames.clone(),
        index: 0,
        arrival: Instant::now(),
    };
    report_allocations(&frames);
    let mut group = c.benchmark_group("per_20ms_frame");

    // Reference: the decode alone at the source format.
    {
        let mut src = stream();
        let mut dec = decoder(48_000, 2);
        let mut pcm = Vec::with_capacity(960 * 2);
        group.bench_function("decode_48k_stereo_only", |b| {
            b.iter(|| {
                pcm.clear();
                black_box(dec.push(src.next_packet(), &mut pcm));
            })
        });
    }

    // (a) decode 48 kHz stereo, then ResamplerCore → 16 kHz mono.
    {
        let mut src = stream();
        let mut dec = decoder(48_000, 2);
        let mut rs = ResamplerCore::new(48_000, 2, 16_000, 1).expect("resampler");
        let (mut pcm, mut out) = (Vec::with_capacity(960 * 2), Vec::with_capacity(640));
        group.bench_function("a_decode48k_stereo+resample_16k_mono", |b| {
            b.iter(|| {
                pcm.clear();
                out.clear();
                dec.push(src.next_packet(), &mut pcm);
                rs.process(&pcm, &mut out);
                black_box(out.len());
            })
        });
    }

    // (b) native decode straight to 16 kHz mono (libopus downmixes).
    {
        let mut src = stream();
        let mut dec = decoder(16_000, 1);
        let mut pcm = Vec::with_capacity(320);
        group.bench_function("b_native_decode_16k_mono", |b| {
            b.iter(|| {
                pcm.clear();
                black_box(dec.push(src.next_packet(), &mut pcm));
            })
        });
    }

    // (c) decode 48 kHz stereo → 44.1 kHz mono through the resampler.
    {
        let mut src = stream();
        let mut dec = decoder(48_000, 2);
        let mut rs = ResamplerCore::new(48_000, 2, 44_100, 1).expect("resampler");
        let (mut pcm, mut out) = (Vec::with_capacity(960 * 2), Vec::with_capacity(1_764));
        group.bench_function("c_decode48k_stereo+resample_44k1_mono", |b| {
            b.iter(|| {
                pcm.clear();
                out.clear();
                dec.push(src.next_packet(), &mut pcm);
                rs.process(&pcm, &mut out);
                black_box(out.len());
            })
        });
    }

    // The 44.1 kHz target the way the product does it: decode mono at 48 kHz, then resample.
    {
        let mut src = stream();
        let mut dec = decoder(48_000, 1);
        let mut rs = ResamplerCore::new(48_000, 1, 44_100, 1).expect("resampler");
        let (mut pcm, mut out) = (Vec::with_capacity(960), Vec::with_capacity(882));
        group.bench_function("c2_decode48k_mono+resample_44k1_mono", |b| {
            b.iter(|| {
                pcm.clear();
                out.clear();
                dec.push(src.next_packet(), &mut pcm);
                rs.process(&pcm, &mut out);
                black_box(out.len());
            })
        });
    }
    group.finish();

    // (d) chunk + base64 + seed JSON, per 200 ms chunk (= 10 Opus frames) at 16 kHz mono.
    let mut group = c.benchmark_group("per_200ms_chunk");
    {
        let format = OutputFormat::default();
        let mut chunker = Chunker::new(&format);
        let id = StreamIdentity {
            stm_id: "bench-stream-0001".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            node: "node-a".into(),
            epoch: 1,
        };
        let mut enc = EnvelopeEncoder::new(EnvelopeKind::Seed, id, &format);
        let pcm: Vec<i16> = (0..3_200)
            .map(|i| ((i * 37) % 20_000 - 10_000) as i16)
            .collect();
        let mut chunks: Vec<Chunk> = Vec::with_capacity(2);
        let arrival = Instant::now();
        group.bench_function("d_chunk+base64+seed_json_16k_mono", |b| {
            b.iter(|| {
                chunks.clear();
                for frame in pcm.chunks(320) {
                    chunker.push(frame, Some(arrival), &mut chunks);
                }
                for chunk in &chunks {
                    black_box(enc.encode(chunk, 1_712_345_678.123_456));
                }
            })
        });
    }
    group.finish();
}

/// Prints heap allocations per 20 ms frame (expected 0) and per 200 ms chunk (expected 2:
/// the chunk's PCM buffer and the JSON text) in steady state.
fn report_allocations(frames: &[Bytes]) {
    let mut src = Stream {
        frames: frames.to_vec(),
        index: 0,
        arrival: Instant::now(),
    };
    let mut dec = decoder(48_000, 2);
    let mut rs = ResamplerCore::new(48_000, 2, 16_000, 1).expect("resampler");
    let (mut pcm, mut out) = (Vec::new(), Vec::new());
    let a = allocations_per_run(500, || {
        pcm.clear();
        out.clear();
        dec.push(src.next_packet(), &mut pcm);
        rs.process(&pcm, &mut out);
    });
    let mut dec = decoder(16_000, 1);
    let b = allocations_per_run(500, || {
        pcm.clear();
        dec.push(src.next_packet(), &mut pcm);
    });
    let format = OutputFormat::default();
    let mut chunker = Chunker::new(&format);
    let mut enc = EnvelopeEncoder::new(EnvelopeKind::Seed, StreamIdentity::default(), &format);
    let samples = vec![0i16; 320];
    let mut chunks = Vec::with_capacity(2);
    let d = allocations_per_run(100, || {
        chunks.clear();
        for _ in 0..10 {
            chunker.push(&samples, None, &mut chunks);
        }
        for chunk in &chunks {
            black_box(enc.encode(chunk, 1.0));
        }
    });
    println!("heap allocations: (a) {a:.2}/frame, (b) {b:.2}/frame, (d) {d:.2}/200 ms chunk");
}

criterion_group!(benches, bench_paths);
criterion_main!(benches);
