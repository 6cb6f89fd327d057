#!/usr/bin/env python3
"""Writes the first test image of each digit 0-9 from data/mnist as examples/images/mnist-test-D.png
(28x28 greyscale, white digit on black, as in MNIST). Stdlib only.

usage: scripts/make-digit-pngs.py
"""
import gzip
import os
import struct
import zlib

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with gzip.open(os.path.join(root, "data/mnist/t10k-images-idx3-ubyte.gz")) as f:
    images = f.read()[16:]
with gzip.open(os.path.join(root, "data/mnist/t10k-labels-idx1-ubyte.gz")) as f:
    labels = f.read()[8:]


def png(pixels, w, h):
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


out = os.path.join(root, "examples/images")
os.makedirs(out, exist_ok=True)
done = set()
for i, label in enumerate(labels):
    if label in done:
        continue
    done.add(label)
    with open(os.path.join(out, f"mnist-test-{label}.png"), "wb") as f:
        f.write(png(images[i * 784:(i + 1) * 784], 28, 28))
    print(f"mnist-test-{label}.png: test image #{i}")
    if len(done) == 10:
        break
