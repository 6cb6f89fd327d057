"""PEFT side of bench/lora/peft_side_by_side.sh: LoRA on the dequantized SmolLM2 base with the
issue's configuration, the same windows (consecutive 128-token windows of the same text, in file
order), printing one JSON line: trainable parameters, validation loss before/after, tokens/s of
the training steps, peak RSS.

    $py bench/lora/peft_train.py BASE_HF_DIR TRAIN.txt VAL.txt OUT_ADAPTER STEPS BATCH SEQ LR VAL_WINDOWS THREADS
"""
import json
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

base, train_txt, val_txt, out = sys.argv[1:5]
steps, batch, seq = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
lr, val_windows, threads = float(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
torch.set_num_threads(threads)
torch.manual_seed(0)

tok = AutoTokenizer.from_pretrained(base)


def windows(path):
    ids = tok(open(path).read(), add_special_tokens=False)["input_ids"]
    n = len(ids) // seq
    return torch.tensor(ids[: n * seq]).view(n, seq)


train, val = windows(train_txt), windows(val_txt)[:val_windows]
model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
model = get_peft_model(
    model,
    LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"),
)
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
total = sum(p.numel() for p in model.parameters())


def val_loss():
    model.eval()
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(val), batch):
            x = val[i : i + batch]
            n = x.numel() - x.shape[0]
            tot += model(input_ids=x, labels=x).loss.item() * n
            cnt += n
    model.train()
    return tot / cnt


before = val_loss()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
spent = 0.0
steps_per_epoch = (len(train) + batch - 1) // batch
for s in range(steps):
    w = s % steps_per_epoch
    x = train[w * batch : (w + 1) * batch]
    t0 = time.perf_counter()
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    spent += time.perf_counter() - t0
after = val_loss()
model.save_pretrained(out)
print(
    json.dumps(
        {
            "trainable_params": trainable,
            "total_params": total,
            "train_windows": len(train),
            "val_windows": len(val),
            "val_loss_before": before,
            "val_loss_after": after,
            "tokens_per_s": steps * batch * seq / spent,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
)
