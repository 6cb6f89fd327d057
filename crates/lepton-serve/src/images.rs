//! Image bodies to pixels, with every limit checked from the header before decoding: the
//! format (PNG or JPEG), the side and pixel count, the decoded size in bytes (width x height x
//! channels x bytes per sample, so 16-bit images count double), and whether the file is large
//! enough to hold what it declares. Decoding itself runs under `image`'s allocation limit.
//! Call [`decode_image`] from a blocking thread ([`crate::offload`]) unless [`decoded_bytes`]
//! says the image is small.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat};

use crate::config::Limits;
use crate::error::ApiError;

/// Deflate's largest compression ratio (RFC 1951: a 258-byte match in at most 2 bits, plus
/// block overhead, is 1032:1); PNG's filtered rows cannot shrink more.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// A baseline or progressive Huffman JPEG spends at least one bit per 8x8 block (the DC code of
/// the first scan), so a byte holds at most 8 x 64 = 512 pixels.
const JPEG_MAX_PIXELS_PER_BYTE: u64 = 512;

/// The most pixels (`Jpeg`) or raw bytes (`Png`) a file of `len` bytes can decode to.
fn fits_in_file(format: ImageFormat, w: u64, h: u64, bits_per_pixel: u64, len: u64) -> bool {
    match format {
        // Each row is one filter byte plus the packed samples.
        ImageFormat::Png => h * (1 + (w * bits_per_pixel).div_ceil(8)) <= DEFLATE_MAX_RATIO * len,
        _ => w * h <= JPEG_MAX_PIXELS_PER_BYTE * len,
    }
}

/// The bytes a PNG or JPEG body decodes to, after every header check of [`decode_image`]
/// (nothing is decoded): what the caller weighs to decide where the decoding runs.
pub fn decoded_bytes(bytes: &[u8], limits: &Limits, what: &str) -> Result<u64, ApiError> {
    checked_decoder(bytes, limits, what).map(|(_, decoded)| decoded)
}

/// Decode a PNG or JPEG body after the header checks; `what` names the request part.
pub fn decode_image(bytes: &[u8], limits: &Limits, what: &str) -> Result<DynamicImage, ApiError> {
    let (decoder, decoded) = checked_decoder(bytes, limits, what)?;
    decode_checked(decoder, decoded, limits, what)
}

/// [`decode_image`] when the body decodes to at most `small` bytes (then it is cheap enough to
/// decode on the caller's thread), `None` otherwise: the header is read and checked once.
pub fn decode_small_image(
    bytes: &[u8],
    limits: &Limits,
    what: &str,
    small: u64,
) -> Result<Option<DynamicImage>, ApiError> {
    let (decoder, decoded) = checked_decoder(bytes, limits, what)?;
    if decoded > small {
        return Ok(None);
    }
    decode_checked(decoder, decoded, limits, what).map(Some)
}

/// Decode under `image`'s allocation limits, from a decoder whose header passed the checks.
fn decode_checked(
    mut decoder: impl ImageDecoder,
    decoded: u64,
    limits: &Limits,
    what: &str,
) -> Result<DynamicImage, ApiError> {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_image_side);
    l.max_image_height = Some(limits.max_image_side);
    // The output buffer plus the decoder's own working memory.
    l.max_alloc = Some(decoded.saturating_mul(2).max(1 << 20));
    decoder
        .set_limits(l)
        .map_err(|e| ApiError::PayloadTooLarge(format!("{what}: {e}")))?;
    DynamicImage::from_decoder(decoder)
        .map_err(|e| ApiError::BadRequest(format!("{what}: cannot decode the image: {e}")))
}

/// The body's decoder once its header passed every check, and the bytes it decodes to.
fn checked_decoder<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    what: &str,
) -> Result<(impl ImageDecoder + 'a, u64), ApiError> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::BadRequest(format!("{what}: {e}")))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        _ => {
            return Err(ApiError::UnsupportedMedia(format!(
                "{what}: not a PNG or JPEG image"
            )))
        }
    };
    let decoder = reader
        .into_decoder()
        .map_err(|e| ApiError::BadRequest(format!("{what}: cannot read the image header: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ApiError::BadRequest(format!("{what}: image is {w}x{h}")));
    }
    if w > limits.max_image_side
        || h > limits.max_image_side
        || (w as u64) * (h as u64) > limits.max_image_pixels
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "{what}: image is {w}x{h}, the limit is {0}x{0} and {1} pixels",
            limits.max_image_side, limits.max_image_pixels
        )));
    }
    let decoded = decoder.total_bytes();
    if decoded > limits.max_image_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "{what}: a {w}x{h} {:?} image decodes to {decoded} bytes, the limit is {}",
            decoder.color_type(),
            limits.max_image_bytes
        )));
    }
    let bits = decoder.original_color_type().bits_per_pixel() as u64;
    if !fits_in_file(format, w as u64, h as u64, bits, bytes.len() as u64) {
        return Err(ApiError::BadRequest(format!(
            "{what}: the header declares a {w}x{h} image, which {} bytes of {format:?} cannot hold (truncated or crafted file)",
            bytes.len()
        )));
    }
    Ok((decoder, decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, color: image::ColorType) -> Vec<u8> {
        let img = match color {
            image::ColorType::L16 => DynamicImage::ImageLuma16(image::ImageBuffer::new(w, h)),
            image::ColorType::Rgb16 => DynamicImage::ImageRgb16(image::ImageBuffer::new(w, h)),
            _ => DynamicImage::ImageLuma8(image::ImageBuffer::new(w, h)),
        };
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A valid JPEG header (SOI, DQT, SOF0, DHT, SOS) declaring `w` x `h`, with almost no
    /// scan data: what an attacker sends to make the server decode 16 M pixels of nothing.
    fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
        let mut small = Cursor::new(Vec::new());
        DynamicImage::ImageLuma8(image::ImageBuffer::new(8, 8))
            .write_to(&mut small, ImageFormat::Jpeg)
            .unwrap();
        let mut b = small.into_inner();
        // Patch the SOF0 frame's height and width.
        let sof = b.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        b
    }

    /// Issue 12 finding 3: a 452-byte JPEG claiming 4000x4000 was decoded and answered 200.
    #[test]
    fn a_tiny_jpeg_claiming_16_megapixels_is_refused_before_decoding() {
        let b = jpeg_claiming(4000, 4000);
        assert!(b.len() < 1000, "{} bytes", b.len());
        let e = decode_image(&b, &Limits::default(), "request body").unwrap_err();
        assert_eq!(e.status().as_u16(), 400, "{e}");
        assert!(e.to_string().contains("declares a 4000x4000 image"), "{e}");
        // The same header with a plausible size decodes.
        assert!(decode_image(&jpeg_claiming(8, 8), &Limits::default(), "b").is_ok());
    }

    #[test]
    fn sixteen_bit_images_count_their_decoded_bytes() {
        let limits = Limits {
            max_image_bytes: 1 << 20,
            ..Limits::default()
        };
        // 1024x1024 8-bit gray = 1 MiB: fits; the same in 16-bit = 2 MiB: refused from the header.
        assert!(decode_image(&png(1024, 1024, image::ColorType::L8), &limits, "b").is_ok());
        let e = decode_image(&png(1024, 1024, image::ColorType::L16), &limits, "b").unwrap_err();
        assert_eq!(e.status().as_u16(), 413);
        assert!(e.to_string().contains("decodes to 2097152 bytes"), "{e}");
    }

    #[test]
    fn a_truncated_png_claiming_more_than_deflate_can_hold_is_refused() {
        let mut b = png(16, 16, image::ColorType::L8);
        // IHDR width/height at bytes 16..24: claim 4000x4000 with a ~100-byte file.
        b[16..20].copy_from_slice(&4000u32.to_be_bytes());
        b[20..24].copy_from_slice(&4000u32.to_be_bytes());
        let e = decode_image(&b, &Limits::default(), "b").unwrap_err();
        // (The IHDR CRC no longer matches either; either refusal is before decoding.)
        assert_eq!(e.status().as_u16(), 400, "{e}");
    }
}
