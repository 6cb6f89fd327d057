#!/usr/bin/env python3
"""Re-quantize a GGUF file with llama.cpp's own `llama_model_quantize` (llama-cpp-python), e.g.
SmolLM2's Q4_1 file into the K-quant mixes people download:

    py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
    $py bench/llm/requantize.py IN.gguf OUT.gguf Q4_K_M|Q6_K|Q5_K_M

llama.cpp picks each tensor's type from the mix (and falls back to Q5_0/Q5_1/Q8_0 where a row is not
a multiple of 256 values, as SmolLM2's 576-wide rows are). Requantizing from Q4_1 compounds the
rounding, which does not matter here: lepton and llama.cpp are compared on the same output file.
"""
import sys

import llama_cpp

FTYPES = {
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
}


def main():
    src, dst, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc})")


if __name__ == "__main__":
    main()
