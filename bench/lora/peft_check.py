"""Acceptance 2 and 3 of issue 15 on the real base, run by bench/lora/peft_side_by_side.sh:
- Lepton's adapter loads in PEFT; PEFT's logits equal Lepton's (lora_logits example output);
- PEFT's adapter loads in Lepton; Lepton's logits equal PEFT's;
- `lepton lora merge`'s folder (loaded by transformers) equals PEFT unmerged, and its greedy
  continuation equals the unmerged model's (PEFT's and Lepton's).
Prints one JSON line; exits 1 when a bound is missed.

    $py bench/lora/peft_check.py BASE_HF_DIR PROBE.json LEPTON_ADAPTER LEPTON_ON_LEPTON.json \
        PEFT_ADAPTER LEPTON_ON_PEFT.json MERGED_DIR GREEDY_STEPS THREADS
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

base, probe, lep_ad, lep_logits, peft_ad, lep_on_peft, merged_dir = sys.argv[1:8]
steps, threads = int(sys.argv[8]), int(sys.argv[9])
torch.set_num_threads(threads)
ids = torch.tensor([json.load(open(probe))])


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


def peft_logits(adapter):
    m = PeftModel.from_pretrained(load(base), adapter).eval()
    with torch.no_grad():
        logits = m(ids).logits[0]
        greedy = m.generate(ids, max_new_tokens=steps, do_sample=False)[0, ids.shape[1]:].tolist()
    return logits, greedy


res = {}
ok = True
for name, adapter, ours_path in [("lepton_adapter", lep_ad, lep_logits), ("peft_adapter", peft_ad, lep_on_peft)]:
    theirs, greedy = peft_logits(adapter)
    ours = json.load(open(ours_path))
    diff = (torch.tensor(ours["logits"]) - theirs).abs().max().item()
    res[name] = {
        "max_abs_logit_diff_peft_vs_lepton": diff,
        "lepton_merged_vs_unmerged": ours["merged_max_abs_diff"],
        "greedy_equal_peft_lepton": greedy == ours["greedy"],
        "greedy_equal_lepton_merged_unmerged": ours["greedy"] == ours["greedy_merged"],
    }
    ok &= diff < 1e-3 and ours["merged_max_abs_diff"] < 1e-4 and ours["greedy"] == ours["greedy_merged"]
    if name == "lepton_adapter":
        unmerged_logits, unmerged_greedy = theirs, greedy
merged = load(merged_dir)
with torch.no_grad():
    ml = merged(ids).logits[0]
    mg = merged.generate(ids, max_new_tokens=steps, do_sample=False)[0, ids.shape[1]:].tolist()
res["lepton_merged_folder_vs_peft_unmerged"] = (ml - unmerged_logits).abs().max().item()
res["greedy_merged_folder_equal_unmerged"] = mg == unmerged_greedy
ok &= res["lepton_merged_folder_vs_peft_unmerged"] < 1e-4 and mg == unmerged_greedy
res["ok"] = ok
print(json.dumps(res))
sys.exit(0 if ok else 1)
