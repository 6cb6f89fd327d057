"""Golden logits of SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to f32 by transformers) for the
lepton-finetune decoder test, and the dequantized base saved as a Hugging Face folder for PEFT.

    py=$(bench/pyenv.sh torch numpy transformers peft gguf)/bin/python
    $py bench/lora/golden.py ~/.cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        crates/lepton-finetune/tests/golden/smollm2_logits.json [HF_OUT_DIR]

The JSON holds the prompt tokens, the first 32 logits of every position, each row's logsumexp and
argmax (a check on the whole vocabulary without committing 49,152 floats per row).
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

torch.manual_seed(0)
gguf, out = sys.argv[1], sys.argv[2]
hf_out = sys.argv[3] if len(sys.argv) > 3 else None
model = AutoModelForCausalLM.from_pretrained(
    os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf), torch_dtype=torch.float32
)
model.eval()
tokens = [1, 504, 3458, 282, 4371, 314, 260, 1345, 30, 2, 17, 9915]
with torch.no_grad():
    logits = model(torch.tensor([tokens])).logits[0]
golden = {
    "tokens": tokens,
    "head": logits[:, :32].tolist(),
    "logsumexp": torch.logsumexp(logits, -1).tolist(),
    "argmax": logits.argmax(-1).tolist(),
}
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump(golden, f)
print("wrote", out)
if hf_out:
    model.hf_quantizer = None
    model.save_pretrained(hf_out, safe_serialization=True)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf)).save_pretrained(hf_out)
    print("saved the dequantized base to", hf_out)
