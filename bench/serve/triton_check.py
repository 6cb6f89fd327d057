#!/usr/bin/env python3
"""Classify PNG files through a running Lepton server's Open Inference Protocol v2 endpoint with the
official `tritonclient[http]` client (binary tensor data, as the client sends by default), and print
one JSON line per file: {"file", "label", "probabilities"}.

usage: triton_check.py HOST:PORT MODEL TOKEN FILE.png...
"""
import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from PIL import Image

url, model, token, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
headers = {"Authorization": f"Bearer {token}"} if token else {}
client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
assert client.is_model_ready(model, headers=headers), f"model {model} not ready"
meta = client.get_model_metadata(model, headers=headers)
inp, out = meta["inputs"][0], meta["outputs"][0]
c, h, w = inp["shape"][1:]

# Class names come from the v1 model list (the v2 metadata has only tensor shapes).
req = urllib.request.Request(f"http://{url}/v1/models", headers=headers)
classes = next(m["classes"] for m in json.load(urllib.request.urlopen(req))["data"] if m["id"] == model)

pixels = []
for f in files:
    img = Image.open(f).convert("L" if c == 1 else "RGB").resize((w, h))
    a = np.asarray(img, dtype=np.float32)
    pixels.append(a[None] if c == 1 else a.transpose(2, 0, 1))
batch = np.stack(pixels)  # [N, C, H, W], raw pixel values 0-255

x = httpclient.InferInput(inp["name"], list(batch.shape), "FP32")
x.set_data_from_numpy(batch, binary_data=True)
y = httpclient.InferRequestedOutput(out["name"], binary_data=True)
result = client.infer(model, inputs=[x], outputs=[y], headers=headers)
probs = result.as_numpy(out["name"])
assert probs.shape == (len(files), len(classes)), probs.shape
for f, p in zip(files, probs):
    print(json.dumps({"file": f, "label": classes[int(np.argmax(p))], "probabilities": [float(v) for v in p]}))
