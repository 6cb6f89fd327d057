//! Image sets: MNIST, image folders (one sub-folder per class) and CIFAR-10 binary batches, all
//! read into `u8` pixels in `[N, C, H, W]` order.

use std::path::{Path, PathBuf};

use crate::budget::{check_declared, check_file, read_file, MAX_DECODED_BYTES, MAX_FILE_BYTES};
use crate::error::{Error, Result};
use crate::idx::{load_idx_pair, PinCheck};

/// Raw images with integer labels.
#[derive(Debug, Clone, Default)]
pub struct ImageSet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[N, C, H, W]` pixels, 0-255.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
    pub pins: Vec<PinCheck>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

fn digit_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// MNIST-style folder: `train-*` and `t10k-*` IDX files. Returns (train, test).
pub fn load_mnist(dir: &Path) -> Result<(ImageSet, Option<ImageSet>)> {
    if !dir.is_dir() {
        return Err(Error::format(
            dir,
            "not a folder (expected the MNIST IDX files inside)",
        ));
    }
    let to_set = |raw: crate::idx::IdxImages| {
        let max = raw.labels.iter().copied().max().unwrap_or(0) as usize;
        let names = if max < 10 {
            digit_names()
        } else {
            (0..=max).map(|d| d.to_string()).collect()
        };
        ImageSet {
            channels: 1,
            height: raw.rows,
            width: raw.cols,
            pixels: raw.pixels,
            labels: raw.labels,
            class_names: names,
            pins: raw.pins,
        }
    };
    let train = to_set(load_idx_pair(dir, "train")?);
    let has_test = ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"]
        .iter()
        .any(|n| dir.join(n).exists());
    let test = if has_test {
        Some(to_set(load_idx_pair(dir, "t10k")?))
    } else {
        None
    };
    if let Some(t) = &test {
        if (t.height, t.width) != (train.height, train.width) {
            return Err(Error::format(
                dir,
                format!(
                    "test images are {}x{}, training images {}x{}",
                    t.height, t.width, train.height, train.width
                ),
            ));
        }
    }
    Ok((train, test))
}

/// Decode one image file into `[C, H, W]` bytes at the given size and channel count.
pub fn decode_image(
    img: &image::DynamicImage,
    channels: usize,
    height: usize,
    width: usize,
) -> Vec<u8> {
    let resized;
    let img = if img.height() as usize != height || img.width() as usize != width {
        resized = img.resize_exact(
            width as u32,
            height as u32,
            image::imageops::FilterType::Triangle,
        );
        &resized
    } else {
        img
    };
    let (h, w) = (height, width);
    let mut out = vec![0u8; channels * h * w];
    if channels == 1 {
        let g = img.to_luma8();
        out.copy_from_slice(g.as_raw());
    } else {
        let rgb = img.to_rgb8();
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * h * w + i] = px[c];
            }
        }
    }
    out
}

/// Read an image file with limits on its declared size (decompression bombs).
pub fn open_image(path: &Path) -> Result<image::DynamicImage> {
    check_file(path, MAX_FILE_BYTES)?;
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = reader
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    reader.decode().map_err(|e| Error::Image {
        path: path.to_path_buf(),
        source: e,
    })
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// A folder with one sub-folder per class (sorted by name), PNG/JPEG files inside.
pub fn load_image_folder(
    dir: &Path,
    size: Option<[usize; 2]>,
    channels: Option<usize>,
) -> Result<ImageSet> {
    let read_dir = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| Error::io(d, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let classes: Vec<PathBuf> = read_dir(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(Error::format(
            dir,
            "no class sub-folders (expected one folder of images per class)",
        ));
    }
    let channels = channels.unwrap_or(3);
    let mut set = ImageSet {
        channels,
        ..Default::default()
    };
    for (label, class_dir) in classes.iter().enumerate() {
        set.class_names.push(
            class_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        let files: Vec<PathBuf> = read_dir(class_dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if files.is_empty() {
            return Err(Error::format(
                class_dir,
                "class folder has no PNG or JPEG images (a class needs samples)",
            ));
        }
        for file in files {
            let img = open_image(&file)?;
            if set.height == 0 {
                let [h, w] = size.unwrap_or([img.height() as usize, img.width() as usize]);
                set.height = h;
                set.width = w;
            }
            let per = channels * set.height * set.width;
            check_declared(
                &file,
                "the image folder",
                (set.pixels.len() + per) as u64,
                MAX_DECODED_BYTES,
            )?;
            set.pixels
                .extend(decode_image(&img, channels, set.height, set.width));
            set.labels.push(label as u32);
        }
    }
    if set.is_empty() {
        return Err(Error::format(
            dir,
            "no PNG or JPEG images in the class folders",
        ));
    }
    Ok(set)
}

/// CIFAR-10 class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Parse CIFAR-10 binary records: 1 label byte then 3,072 bytes (R, G, B planes of 32x32).
pub fn parse_cifar10(bytes: &[u8]) -> std::result::Result<(Vec<u32>, Vec<u8>), String> {
    const REC: usize = 1 + 3 * 32 * 32;
    if bytes.is_empty() || bytes.len() % REC != 0 {
        return Err(format!(
            "size {} is not a positive multiple of the 3,073-byte record",
            bytes.len()
        ));
    }
    let mut labels = Vec::with_capacity(bytes.len() / REC);
    let mut pixels = Vec::with_capacity(bytes.len() / REC * (REC - 1));
    for (i, rec) in bytes.chunks_exact(REC).enumerate() {
        if rec[0] > 9 {
            return Err(format!("record {i}: label {} is not in 0..=9", rec[0]));
        }
        labels.push(rec[0] as u32);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((labels, pixels))
}

/// A CIFAR-10 folder (`data_batch_*.bin` + `test_batch.bin`) or a single `.bin` file.
pub fn load_cifar10(path: &Path) -> Result<(ImageSet, Option<ImageSet>)> {
    let read = |files: &[PathBuf]| -> Result<ImageSet> {
        let mut set = ImageSet {
            channels: 3,
            height: 32,
            width: 32,
            class_names: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        for f in files {
            let len = check_file(f, MAX_FILE_BYTES)?;
            check_declared(
                f,
                "the CIFAR-10 batches",
                set.pixels.len() as u64 + len,
                MAX_DECODED_BYTES,
            )?;
            let bytes = read_file(f, MAX_FILE_BYTES)?;
            let (l, p) = parse_cifar10(&bytes).map_err(|m| Error::format(f, m))?;
            set.labels.extend(l);
            set.pixels.extend(p);
        }
        Ok(set)
    };
    if !path.is_dir() {
        // A single batch file (the reader refuses a missing, special or oversized file by name).
        return Ok((read(&[path.to_path_buf()])?, None));
    }
    let mut train: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("data_batch") && n.ends_with(".bin"))
        })
        .collect();
    train.sort();
    if train.is_empty() {
        return Err(Error::format(path, "no data_batch_*.bin files"));
    }
    let test = path.join("test_batch.bin");
    let test = if test.exists() {
        Some(read(&[test])?)
    } else {
        None
    };
    Ok((read(&train)?, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_records_parse_and_bad_sizes_fail() {
        let mut bytes = vec![3u8];
        bytes.extend((0..3072).map(|i| (i % 251) as u8));
        let (l, p) = parse_cifar10(&bytes).unwrap();
        assert_eq!(l, vec![3]);
        assert_eq!(p.len(), 3072);
        assert_eq!(p[1], 1);
        assert!(parse_cifar10(&bytes[..100]).is_err());
        bytes[0] = 11;
        assert!(parse_cifar10(&bytes).unwrap_err().contains("label 11"));
    }
}
