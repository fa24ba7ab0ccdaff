//! The header of a live (endless) WAV stream, for `GET /v1/streams/{stmId}/listen`
//! (SPEC §5).
//!
//! A WAV file states its length up front (RIFF size, `data` size). A live stream has none,
//! so both sizes are `0xFFFF_FFFF`: the largest value the 32-bit fields hold, which browsers'
//! `<audio>`, ffmpeg and sox read as "until the connection ends". The fmt chunk is plain
//! 16-bit PCM (format tag 1) because that is what the pipeline produces (s16le, interleaved);
//! no `WAVE_FORMAT_EXTENSIBLE`, which some players reject for 1–2 channels.

/// Bytes of the header [`streaming_header`] returns; PCM follows right after it.
pub const HEADER_LEN: usize = 44;

/// Bits per sample of the PCM the header announces (s16le).
pub const BITS_PER_SAMPLE: u16 = 16;

/// The RIFF and `data` size of a stream of unknown length.
pub const UNKNOWN_SIZE: u32 = u32::MAX;

/// A 44-byte RIFF/WAVE header for endless s16le PCM at `sample_rate` Hz with `channels`
/// interleaved channels. Pure: the caller sends it once, before the first PCM byte.
pub fn streaming_header(sample_rate: u32, channels: u16) -> [u8; HEADER_LEN] {
    let block_align = channels.saturating_mul(BITS_PER_SAMPLE / 8);
    let byte_rate = sample_rate.saturating_mul(u32::from(block_align));
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&UNKNOWN_SIZE.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes()); // fmt chunk size (plain PCM)
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&BITS_PER_SAMPLE.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&UNKNOWN_SIZE.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(h: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([h[at], h[at + 1]])
    }

    fn u32_at(h: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
    }

    /// Reads the header back the way a WAV reader walks it: RIFF, then chunks by id/size.
    #[test]
    fn header_parses_back_field_by_field() {
        for (rate, channels) in [(16_000u32, 1u16), (48_000, 2), (8_000, 1), (44_100, 2)] {
            let h = streaming_header(rate, channels);
            assert_eq!(h.len(), HEADER_LEN);
            assert_eq!(&h[0..4], b"RIFF");
            assert_eq!(u32_at(&h, 4), u32::MAX, "endless RIFF size");
            assert_eq!(&h[8..12], b"WAVE");
            assert_eq!(&h[12..16], b"fmt ");
            let fmt_len = u32_at(&h, 16) as usize;
            assert_eq!(fmt_len, 16);
            assert_eq!(u16_at(&h, 20), 1, "PCM format tag");
            assert_eq!(u16_at(&h, 22), channels);
            assert_eq!(u32_at(&h, 24), rate);
            assert_eq!(u32_at(&h, 28), rate * u32::from(channels) * 2, "byte rate");
            assert_eq!(u16_at(&h, 32), channels * 2, "block align");
            assert_eq!(u16_at(&h, 34), 16, "bits per sample");
            // The data chunk follows the fmt chunk exactly, and PCM follows the header.
            let data = 20 + fmt_len;
            assert_eq!(&h[data..data + 4], b"data");
            assert_eq!(u32_at(&h, data + 4), u32::MAX, "endless data size");
            assert_eq!(data + 8, HEADER_LEN);
        }
    }
}
