#!/usr/bin/env python3
"""Greedy token ids from llama.cpp (llama-cpp-python) on several plain-text prompts: the golden
files that `cargo test -p lepton-llm --test it` checks lepton's decoder against (Gemma 3, SmolLM2
re-quantized to K-quant mixes).

    py=$(bench/pyenv.sh llama-cpp-python numpy)/bin/python
    $py bench/llm/llamacpp_greedy_cases.py $(scripts/fetch-assets.sh gemma) > bench/llm/gemma3_greedy.json

Greedy = argmax of llama.cpp's logits after each token (no sampler), N = 32 tokens, each prompt
evaluated in one batch with the BOS token the file asks for, then one token per step, 2 threads.

A small model often has near-ties between its two best tokens; there, any rounding difference flips
the choice and the rest of the text (Gemma 3 270M's logits move by 0.1-0.5 between llama.cpp's own
attention paths, or with an unrounded GELU). A prompt is kept only when llama.cpp's own run is well
conditioned: at each step the best logit leads the second by at least MARGIN, and three runs with
different rounding agree (f16 KV cache, f32 KV cache, flash attention). Every candidate is recorded with its
smallest margin; the first WANT well-conditioned ones are the cases.
"""
import hashlib
import json
import sys

import llama_cpp
import numpy as np

CANDIDATES = [
    "The capital of France is",
    "Once upon a time, there was a little girl who",
    "The three primary colors are",
    "def fibonacci(n):\n",
    "Water boils at a temperature of",
    "The largest planet in our solar system is",
    "In 1969, Neil Armstrong",
    "A recipe for pancakes:\n1.",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "The first rule of programming is",
    "My favourite season is autumn because",
    "import numpy as np\n",
    "The history of the Roman Empire",
    "Dear John,\nI am writing to",
    "Machine learning is a field of",
    "The cat sat on the",
    "Here is a list of fruits: apple, banana,",
    "The sun rises in the",
    "Mount Everest is the",
    "To be or not to be,",
    "The Internet was invented",
    "One, two, three, four,",
    "The chemical symbol for gold is",
    "Monday, Tuesday, Wednesday,",
    "The Eiffel Tower is located in",
    "The boiling point of water at sea level is",
    "Python is a programming language that",
    "The human heart has four",
    "The Great Wall of China was built",
    "Shakespeare wrote many plays, including",
    "The speed of light is approximately",
    "A triangle has three sides and",
    "The moon orbits the Earth every",
    "Bees are important because they",
    "The Pacific Ocean is the",
    "Albert Einstein is famous for",
    "The first step in solving a problem is",
    "Exercise is good for your health because",
    "The United States declared independence in",
    "A computer program is a set of",
    "The main ingredients of bread are",
    "Dogs are often called man's best friend because",
    "The periodic table organizes elements by",
    "In the morning, I usually",
    "The French Revolution began in",
    "The smallest prime number is",
    "Rain forms when water vapor",
    "The Amazon rainforest is home to",
    "Good communication skills include",
    "The process of cell division is called",
    "An apple a day",
    "The planets of the solar system are Mercury, Venus,",
    "Leonardo da Vinci painted the",
    "The key to a successful business is",
    "Climate change is caused by",
    "The alphabet begins with the letters",
    "A haiku is a poem with",
    "The human brain is responsible for",
    "The Olympic Games are held every",
    "Electricity is the flow of",
    "The best way to learn a new language is",
    "The Nile is the longest river in",
    "In mathematics, a prime number is",
    "The Statue of Liberty was a gift from",
    "Trees produce oxygen through",
    "The capital of Japan is",
    "Once upon a time in a small village,",
    "The most important meal of the day is",
    "A healthy diet includes",
    "The invention of the printing press",
    "The year has twelve months: January, February,",
    "Vitamin C can be found in",
    "The tallest animal in the world is the",
    "Gravity is the force that",
    "SELECT * FROM users WHERE",
    "for i in range(10):\n",
    "The difference between weather and climate is",
    "Sleep is important because",
    "The colors of the rainbow are red, orange,",
    "Newton's first law of motion states that",
    "The capital of Italy is",
    "Recycling helps the environment by",
    "The piano is a musical instrument that",
    "A noun is a word that",
    "The Sahara is the largest hot desert",
    "DNA stands for",
    "The theory of evolution was proposed by",
    "Ice melts at a temperature of",
    "The Internet allows people to",
    "Chess is a game played on a board with",
    "The Roman numeral for ten is",
    "Volcanoes erupt when",
    "The human body has 206",
    "The Mona Lisa is displayed in the",
    "Hello, my name is",
    "The largest mammal on Earth is the",
    "Honey is made by",
    "The capital of Germany is",
    "The first man to walk on the moon was",
    "Water is made of hydrogen and",
]
N = 32
MARGIN = 0.05
WANT = 6


def load(path, **kw):
    return llama_cpp.Llama(
        model_path=path, n_ctx=256, n_threads=2, n_batch=256, logits_all=True, verbose=False, **kw
    )


def greedy(llm, text):
    llm.reset()
    prompt = llm.tokenize(text.encode(), add_bos=True, special=False)
    llm.eval(prompt)
    out, margins = [], []
    for _ in range(N):
        s = np.array(llm.scores[llm.n_tokens - 1])
        order = np.argsort(-s, kind="stable")[:2]
        out.append(int(order[0]))
        margins.append(float(s[order[0]] - s[order[1]]))
        llm.eval([out[-1]])
    return prompt, out, llm.detokenize(out).decode("utf-8", "replace"), margins


def main():
    path = sys.argv[1]
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    f16_kv, f32_kv, flash = load(path), load(path, type_k=0, type_v=0), load(path, flash_attn=True)
    tried, cases = [], []
    for text in CANDIDATES:
        prompt, ids, out_text, margins = greedy(f16_kv, text)
        f32 = greedy(f32_kv, text)[1]
        fa = greedy(flash, text)[1]
        tried.append({
            "prompt": text, "min_margin": round(min(margins), 4),
            "f32_kv_agrees": f32 == ids, "flash_attn_agrees": fa == ids,
        })
        print(tried[-1], file=sys.stderr)
        if min(margins) >= MARGIN and f32 == ids and fa == ids:
            cases.append({"prompt": text, "prompt_ids": prompt, "generated_ids": ids, "text": out_text})
        if len(cases) == WANT:
            break
    if len(cases) < 5:
        sys.exit(f"only {len(cases)} well-conditioned prompts")
    json.dump(
        {
            "model_sha256": sha,
            "llama_cpp_python": llama_cpp.__version__,
            "tokens": N,
            "margin": MARGIN,
            "candidates": tried,
            "cases": cases,
        },
        sys.stdout,
        indent=1,
    )
    print()


if __name__ == "__main__":
    main()
