"""PyTorch side of crates/lepton-nn/examples/rnn_speed.rs: forward and backward of nn.LSTM /
nn.GRU (2 layers of 256) over [32, 64, 256], median of 5 runs after one warm-up, same threads.

    py=$(bench/pyenv.sh torch numpy)/bin/python; $py bench/speed/rnn_torch.py
"""
import time

import torch

torch.manual_seed(1)
B, T, F, H = 32, 64, 256, 256
for kind, cls in [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)]:
    m = cls(F, H, num_layers=2, batch_first=True)
    x = torch.randn(B, T, F)
    times = []
    for i in range(6):
        start = time.perf_counter()
        y, _ = m(x)
        y.pow(2).mean().backward()
        if i > 0:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(f"{kind}: forward+backward {median * 1e3:.1f} ms, {B * T / median:.0f} tokens/s "
          f"({torch.get_num_threads()} threads)")
