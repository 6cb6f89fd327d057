#!/usr/bin/env python3
"""Writes recurrent.json beside itself: PyTorch's nn.LSTM / nn.GRU / nn.RNN (2 layers,
bidirectional, small sizes, float64) with their weights, an input and the outputs, for
tests/it/recurrent.rs (our layers must match to 1e-5).

    py=$(bench/pyenv.sh torch numpy)/bin/python; $py crates/lepton-nn/tests/it/golden/recurrent.py
"""
import json
import pathlib

import torch

torch.manual_seed(13)
B, T, F, H, LAYERS = 2, 5, 3, 4, 2
cases = []
for kind, cls in [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)]:
    for bidirectional in [True, False]:
        m = cls(F, H, num_layers=LAYERS, bidirectional=bidirectional, batch_first=True).double()
        dirs = 2 if bidirectional else 1
        x = torch.randn(B, T, F, dtype=torch.float64)
        with torch.no_grad():
            out, state = m(x)
        h_n = state[0] if kind == "lstm" else state
        # The top layer's final hidden state per direction: h_n[-dirs:] as [B, H * dirs].
        last = torch.cat([h_n[-dirs + d] for d in range(dirs)], dim=1)
        cases.append({
            "layer": f'{{ type = "{kind}", hidden-size = {H}, num-layers = {LAYERS}, '
                     f'bidirectional = {"true" if bidirectional else "false"} }}',
            "input_shape": [T, F],
            "input": x.flatten().tolist(),
            "weights": {k: [list(v.shape), v.flatten().tolist()] for k, v in m.state_dict().items()},
            "output": out.flatten().tolist(),
            "last": last.flatten().tolist(),
        })
path = pathlib.Path(__file__).with_name("recurrent.json")
path.write_text(json.dumps(cases, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {path}")
