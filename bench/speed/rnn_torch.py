"""PyTorch side of crates/lepton-nn/examples/rnn_speed.rs: the char-LSTM / char-GRU of issue 13
(Embedding 80 -> 256, nn.LSTM / nn.GRU 2 layers of 256, Linear to 80; random tokens, block 64,
batch 32; forward, cross-entropy, backward, clip_grad_norm_ 1, AdamW lr 3e-3), the same JSON
lines (tokens/s by wall-clock time and by the process's CPU time). Threads from OMP_NUM_THREADS (bench/speed/rnn.sh sets it).

    py=$(bench/pyenv.sh torch numpy)/bin/python; $py bench/speed/rnn_torch.py lstm,gru [STEPS] [RUNS]
"""
import os
import sys
import time

import torch

VOCAB, BLOCK, BATCH, WIDTH, WARMUP = 80, 64, 32, 256, 3


class CharRnn(torch.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, WIDTH)
        self.rnn = cls(WIDTH, WIDTH, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(WIDTH, VOCAB)

    def forward(self, x):
        y, _ = self.rnn(self.emb(x))
        return self.head(y)


def run(kind, steps):
    torch.manual_seed(1)
    model = CharRnn({"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(7)
    start = cpu_start = time.perf_counter()
    for step in range(WARMUP + steps):
        if step == WARMUP:
            start, cpu_start = time.perf_counter(), time.process_time()
        x = torch.randint(0, VOCAB, (BATCH, BLOCK), generator=g)
        y = torch.randint(0, VOCAB, (BATCH * BLOCK,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
    tokens = steps * BATCH * BLOCK
    return tokens / (time.perf_counter() - start), tokens / (time.process_time() - cpu_start)


def main():
    kinds = sys.argv[1].split(",") if len(sys.argv) > 1 else ["lstm", "gru"]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    for kind in kinds:
        for _ in range(runs):
            wall, cpu = run(kind, steps)
            print(f'{{"impl": "pytorch", "kind": "{kind}", "tokens_per_s": {wall:.1f}, '
                  f'"cpu_tokens_per_s": {cpu:.1f}, "threads": {torch.get_num_threads()}}}', flush=True)


if __name__ == "__main__":
    main()
