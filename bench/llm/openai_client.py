"""Checks the official openai client against a running lepton server (see openai_client.sh).

  openai_client.py BASE_URL TOKEN
"""
import math
import sys

import openai
from openai import OpenAI

base, token = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base, api_key=token, max_retries=0)
LLM, EMB = "SmolLM2-135M-Instruct.Q4_1", "all-MiniLM-L6-v2"
failures = []


def check(name, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + str(detail) if detail else ''}")
    if not cond:
        failures.append(name)


ids = [m.id for m in client.models.list().data]
check("models.list has both models", LLM in ids and EMB in ids, ids)

msgs = [{"role": "user", "content": "What is the capital of France?"}]
chat = client.chat.completions.create(model=LLM, messages=msgs, max_tokens=24, temperature=0, seed=7)
text = chat.choices[0].message.content
check("chat: answer", "Paris" in text, repr(text))
check("chat: usage", chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 24, chat.usage)
check("chat: finish_reason", chat.choices[0].finish_reason in ("stop", "length"), chat.choices[0].finish_reason)

pieces, usage, finish = [], None, None
for chunk in client.chat.completions.create(model=LLM, messages=msgs, max_tokens=24, temperature=0,
                                            stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        pieces.append(c.delta.content or "")
        finish = c.finish_reason or finish
check("chat stream: same text as plain (greedy)", "".join(pieces) == text, repr("".join(pieces)))
check("chat stream: usage chunk", usage is not None and usage.completion_tokens == chat.usage.completion_tokens, usage)
check("chat stream: finish_reason", finish == chat.choices[0].finish_reason, finish)

sampled = [client.chat.completions.create(model=LLM, messages=msgs, max_tokens=16, temperature=0.9, top_p=0.95,
                                          seed=42, extra_body={"top_k": 40, "repetition_penalty": 1.1})
           .choices[0].message.content for _ in range(2)]
check("chat: same seed, same sampled answer", sampled[0] == sampled[1], sampled)

comp = client.completions.create(model=LLM, prompt="The capital of France is", max_tokens=8, temperature=0,
                                 stop=["\n"])
check("completions: text", "Paris" in comp.choices[0].text, repr(comp.choices[0].text))
check("completions: stop string not returned", "\n" not in comp.choices[0].text)
streamed = "".join(c.choices[0].text for c in client.completions.create(
    model=LLM, prompt="The capital of France is", max_tokens=8, temperature=0, stop=["\n"], stream=True)
    if c.choices)
check("completions stream: same text", streamed == comp.choices[0].text, repr(streamed))

for fmt in ("float", None):  # None: the client asks for base64 and decodes it itself
    kw = {"encoding_format": fmt} if fmt else {}
    emb = client.embeddings.create(model=EMB, input=["The new movie is awesome", "The new movie is so great"], **kw)
    a, b = emb.data[0].embedding, emb.data[1].embedding
    cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    check(f"embeddings ({fmt or 'base64'}): 384 dims, cosine 0.8939", len(a) == 384 and abs(cos - 0.8939) < 1e-3, f"{cos:.4f}")
    check(f"embeddings ({fmt or 'base64'}): usage", emb.usage.prompt_tokens == 15, emb.usage)

# Typed errors: the nested OpenAI error object ({"error": {"message", "type", "param", "code"}})
# is what the client reads into e.body (the inner object), e.param, e.code and e.type; a flat
# {"error": "text"} body would leave them empty.
for name, call, exc, needle, param in [
    ("bad token -> AuthenticationError", lambda: OpenAI(base_url=base, api_key="wrong", max_retries=0)
        .chat.completions.create(model=LLM, messages=msgs), openai.AuthenticationError, "API token", None),
    ("unknown model -> NotFoundError", lambda: client.chat.completions.create(model="nope", messages=msgs),
        openai.NotFoundError, "no language model named 'nope'", None),
    ("absurd max_tokens -> BadRequestError", lambda: client.completions.create(model=LLM, prompt="x",
        max_tokens=10**12), openai.BadRequestError, "context length", "max_tokens"),
    ("over-long prompt -> BadRequestError", lambda: client.completions.create(model=LLM, prompt="hi " * 9000,
        max_tokens=4), openai.BadRequestError, "tokens", "max_tokens"),
    ("bad temperature -> BadRequestError", lambda: client.chat.completions.create(model=LLM, messages=msgs,
        temperature=5), openai.BadRequestError, "outside [0, 2]", "temperature"),
    ("empty embeddings input -> BadRequestError", lambda: client.embeddings.create(model=EMB, input=[]),
        openai.BadRequestError, "the array is empty", "input"),
]:
    try:
        call()
        check(name, False, "no error")
    except exc as e:
        body = e.body if isinstance(e.body, dict) else {}
        message = body.get("message") or ""
        ok = needle in message and e.param == param and isinstance(e.code, str) and isinstance(e.type, str)
        check(name, ok, f"message={message!r} param={e.param!r} code={e.code!r} type={e.type!r}")
    except openai.APIError as e:
        check(name, False, f"{type(e).__name__}: {e}")

# The server runs with a burst of 40 requests (openai_client.sh): the next ones are refused.
try:
    for _ in range(60):
        client.embeddings.create(model=EMB, input="x")
    check("rate limit -> RateLimitError", False, "no 429 in 60 requests")
except openai.RateLimitError as e:
    body = e.body if isinstance(e.body, dict) else {}
    check("rate limit -> RateLimitError", "rate limit exceeded" in (body.get("message") or "") and e.code == "rate_limited",
          f"message={body.get('message')!r} code={e.code!r} type={e.type!r}")

print(f"openai {openai.__version__}: {'all checks passed' if not failures else f'{len(failures)} FAILED'}")
sys.exit(1 if failures else 0)
