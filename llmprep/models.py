"""Model helpers the chapters' notebooks share (ground floor): sentence embeddings with MiniLM, one chat
turn with SmolLM2, and a tiny random GPT-2 to run decoding code on.

Notebooks import these instead of keeping copies; the trusted probes (``llmprep.grading.probing``) use
the same ``tiny_gpt2``. torch and transformers are imported when a helper is called, so importing this
module is cheap.
"""
from __future__ import annotations

import time


def sentence_embeddings(texts: list[str], encoder, tokenizer, batch_size: int = 64, max_length: int = 128,
                        normalize: bool = True, by_length: bool = True):
    """Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: the encoder's last
    hidden state mean-pooled over the real tokens (attention mask), then L2-normalised (``normalize``).

    Texts are batched by length (``by_length``: less padding; False keeps their order in the batches); rows
    come back in the order of ``texts``. Returns a float32 tensor (len(texts), hidden size), no gradients."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    order = np.argsort([len(t) for t in texts]) if by_length else np.arange(len(texts))
    out = torch.zeros(len(texts), encoder.config.hidden_size)
    with torch.no_grad():
        for k in range(0, len(texts), batch_size):
            rows = order[k:k + batch_size]
            enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            states = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1)
            out[torch.as_tensor(rows)] = F.normalize(pooled, dim=-1) if normalize else pooled
    return out


def chat_prompts(tokenizer, prompts: list[str], system: str | None = None) -> list[str]:
    """Each prompt as one user turn (after an optional system turn) through the tokenizer's own chat template,
    the generation prompt added: the texts a batched ``generate`` continues."""
    out = []
    for p in prompts:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
        out.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return out


def chat_reply(model, tokenizer, prompt: str, max_new_tokens: int = 16, stream: bool = False, **generate_kwargs) -> str:
    """One user turn through the model's chat template, then ``generate``: the reply's text (special tokens
    dropped). ``generate_kwargs`` go to ``generate`` (e.g. ``do_sample=False``, a temperature).

    ``stream=True`` prints the reply as it is generated (``transformers.TextIteratorStreamer``: ``generate``
    runs in a background thread and the streamer yields decoded pieces as tokens arrive, holding back
    incomplete UTF-8 characters), then the time to the first token and the total."""
    import torch

    messages = [{"role": "user", "content": prompt}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    kwargs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                  pad_token_id=tokenizer.eos_token_id, **generate_kwargs)
    if not stream:
        with torch.inference_mode():
            out = model.generate(**kwargs)
        return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    import threading

    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    worker = threading.Thread(target=model.generate, kwargs=dict(kwargs, streamer=streamer))
    worker.start()
    pieces, t, first = [], time.time(), None
    for piece in streamer:
        first = first or time.time() - t
        pieces.append(piece)
        print(piece, end="", flush=True)
    worker.join()
    print(f"\n[time to first token {first:.2f} s, total {time.time() - t:.1f} s]")
    return "".join(pieces)


def tiny_gpt2(vocab, seed, init=0.3):
    """A small random GPT-2 (2 layers, 64 wide, no special tokens) to run a student's decoding or
    scoring code on. A large ``init`` spreads the logits, so greedy and beam paths have no near-ties."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                     bos_token_id=None, eos_token_id=None, pad_token_id=None, initializer_range=init)
    return GPT2LMHeadModel(cfg).eval()
