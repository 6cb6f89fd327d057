#!/usr/bin/env python3
"""Writes char_rnn.json beside itself: a character model as issue 13's char-LSTM / char-GRU
(nn.Embedding -> nn.LSTM / nn.GRU, 2 layers -> nn.Linear to the vocabulary), small sizes, float64:
the weights, token ids and targets, the logits, the mean cross-entropy and the gradient of every
parameter, for tests/it/recurrent.rs (ours must match to 1e-5; our embedding is folded into the
recurrent layer, the table projected once when the vocabulary is no larger than the batch's tokens).

    py=$(bench/pyenv.sh torch numpy)/bin/python; $py crates/lepton-nn/tests/it/golden/char_rnn.py
"""
import json
import pathlib

import torch

torch.manual_seed(2)
B, T, F, H = 3, 6, 5, 4
cases = []
# 11 <= B*T = 18 tokens: the projected table; 40 > 18: the lookup, then the projection.
for kind, cls, bidirectional, vocab in [("lstm", torch.nn.LSTM, True, 11), ("gru", torch.nn.GRU, False, 11),
                                        ("lstm", torch.nn.LSTM, False, 40)]:
    emb = torch.nn.Embedding(vocab, F).double()
    rnn = cls(F, H, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    head = torch.nn.Linear(H * (2 if bidirectional else 1), vocab).double()
    ids = torch.randint(0, vocab, (B, T))
    targets = torch.randint(0, vocab, (B * T,))
    logits = head(rnn(emb(ids))[0])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets)
    loss.backward()
    params = {"layers.0.weight": emb.weight}
    params.update({f"layers.1.{k}": v for k, v in rnn.named_parameters()})
    params.update({f"layers.2.{k}": v for k, v in head.named_parameters()})
    cases.append({
        "layers": f'[{{ type = "embedding", num-embeddings = {vocab}, embedding-dim = {F} }}, '
                  f'{{ type = "{kind}", hidden-size = {H}, num-layers = 2, '
                  f'bidirectional = {"true" if bidirectional else "false"} }}, '
                  f'{{ type = "linear", out-features = {vocab} }}]',
        "block": T,
        "ids": ids.flatten().tolist(),
        "targets": targets.tolist(),
        "weights": {k: [list(v.shape), v.detach().flatten().tolist()] for k, v in params.items()},
        "logits": logits.detach().flatten().tolist(),
        "loss": loss.item(),
        "grads": {k: v.grad.flatten().tolist() for k, v in params.items()},
    })
path = pathlib.Path(__file__).with_name("char_rnn.json")
path.write_text(json.dumps(cases, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {path}")
