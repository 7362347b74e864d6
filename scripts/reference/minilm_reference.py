#!/usr/bin/env python3
"""Reference sentence embeddings for all-MiniLM-L6-v2, written to a test fixture.

An independent implementation of the sentence-transformers recipe: Hugging Face `tokenizers`
(the model's tokenizer.json, truncation at 256 tokens), a BERT forward pass in float64 numpy
from the safetensors weights, mean pooling over real tokens, L2 normalisation. No torch needed.

    pip install numpy safetensors tokenizers
    python3 scripts/reference/minilm_reference.py ~/.cache/mediasift/models/all-MiniLM-L6-v2 \
        > crates/mediasift-models/tests/fixtures/minilm_reference.json
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "Invoice No. 2024-0117, total due EUR 41.85",
    "Всеобщая декларация прав человека",
    "",
]
MAX_TOKENS = 256


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def embed(weights, cfg, ids):
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    t = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids]
    x = x + w["embeddings.position_embeddings.weight"][:t] + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    d = x.shape[1]
    dh = d // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda name, h: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin("attention.self.query", x).reshape(t, heads, dh).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(t, heads, dh).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(t, heads, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(t, d)
        x = layer_norm(x + lin("attention.output.dense", ctx), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(x + lin("output.dense", h), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main(model_dir):
    weights = load_file(f"{model_dir}/model.safetensors")
    cfg = json.load(open(f"{model_dir}/config.json"))
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    out = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        out.append({"text": s, "ids": ids, "vector": [round(float(v), 7) for v in embed(weights, cfg, ids)]})
    json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2", "max_tokens": MAX_TOKENS, "sentences": out}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1])
