//! Fuzz opening a photon (issue 12, finding 7). The first byte picks the mode:
//! - `A`: the rest is a whole file: preamble, lengths, checksums, JSON, weights.
//! - otherwise: a u32 little-endian header length, the header JSON, then the weights; the target
//!   re-signs it (sets `weights_len` and `weights_sha256`, computes the header checksum), as an
//!   attacker would, so mutations reach the consistency checks and the model build.
//!
//! Whatever opens must build its model and predict a zero input without panicking.
#![no_main]
use std::path::Path;

use candle_core::{Device, Tensor};
use libfuzzer_sys::fuzz_target;
use lepton_photon::{Limits, Photon};
use sha2::{Digest, Sha256};

fn resigned(data: &[u8]) -> Option<Vec<u8>> {
    let n = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let header = data.get(4..4usize.checked_add(n)?)?;
    let weights = &data[4 + n..];
    let mut manifest: serde_json::Value = serde_json::from_slice(header).ok()?;
    let obj = manifest.as_object_mut()?;
    obj.insert("weights_len".into(), (weights.len() as u64).into());
    obj.insert(
        "weights_sha256".into(),
        hex::encode(Sha256::digest(weights)).into(),
    );
    Some(lepton_photon::assemble(
        &serde_json::to_vec(&manifest).ok()?,
        weights,
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode == b'A' {
        rest.to_vec()
    } else {
        match resigned(rest) {
            Some(b) => b,
            None => return,
        }
    };
    let Ok(photon) = Photon::from_bytes(Path::new("fuzz.photon"), bytes, &Limits::default())
    else {
        return;
    };
    let _ = photon.inspect();
    let Ok(model) = photon.model() else {
        return;
    };
    let mut shape = vec![1];
    shape.extend(model.preprocessor().sample_shape());
    // Inputs within the budget are accepted; only small ones are run, to keep the fuzzer fast.
    if shape.iter().product::<usize>() <= 1 << 16 {
        if let Ok(x) = Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu) {
            let _ = model.predict(&x);
        }
    }
});
