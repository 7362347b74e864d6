#!/usr/bin/env python3
"""Reference CLIP preprocessing and tokenisation, written as test fixtures.

Preprocessing: transformers' CLIPImageProcessor (its Pillow backend: no torch) on the test
photos, each opened with Pillow and turned upright with ImageOps.exif_transpose (the processor
itself ignores EXIF orientation; we honour it). Per photo it writes the 224x224 uint8 crop the
processor takes (rescale and normalise switched off; sha256 of its CHW bytes) and the final
float32 pixel values at every STRIDE-th position, so the test checks every pixel of the crop
exactly and the normalisation on a sample.

Tokens: OpenAI's original BPE tokenizer as open_clip ships it (SimpleTokenizer: ftfy, regex,
bpe_simple_vocab_16e6.txt.gz), with open_clip's start/end tokens and 77-token truncation,
cross-checked against transformers' CLIPTokenizer built from the same vocabulary.

    pip install numpy pillow==13.0.0 transformers==5.24.0 tokenizers ftfy regex
    pip download --no-deps open_clip_torch==3.3.0   # unzip: open_clip/ (torch is not needed)
    python3 scripts/reference/clip_reference.py tests/fixtures/media/images \
        PATH/TO/open_clip crates/mediasift-models/tests/fixtures
"""
import hashlib
import importlib.util
import json
import sys
import types

import numpy as np
from PIL import Image, ImageOps
from transformers import CLIPImageProcessor, CLIPTokenizer

PHOTOS = [
    "photo_02.jpg",  # baseline JPEG
    "photo_03.webp",
    "photo_05.png",  # grayscale
    "photo_10.jpg",  # EXIF orientation 6, 1200x1800 stored
    "photo_14.jpg",  # 128x128: upscaled
    "photo_15.jpg",  # CMYK JPEG
    "derived_rgb48.png",  # 16 bits per channel
    "derived_alpha.png",  # transparency: composited over white
    "derived_palette.png",
]
STRIDE = 211
CAPTIONS = [
    "a photo of a cat",
    "A photo of a DOG, sitting on the grass!",
    "two   people\twalking\non a beach at sunset",
    "the year 2024 was 365 days long; isn't it?",
    "café crème brûlée — naïve façade",
    "a rocket launch 🚀 at night",
    "don't we'll they've I'm you'd",
    "x" * 3 + " " + "very " * 90 + "long caption",
]


def open_clip_tokenizer(open_clip_dir):
    """open_clip/tokenizer.py imports torch only to build tensors; a stub module suffices."""
    torch = types.ModuleType("torch")
    torch.Tensor = torch.LongTensor = object
    sys.modules.setdefault("torch", torch)
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", f"{open_clip_dir}/tokenizer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SimpleTokenizer(bpe_path=f"{open_clip_dir}/bpe_simple_vocab_16e6.txt.gz")


def reference_ids(tok, text, context_length=77):
    ids = [tok.sot_token_id] + tok.encode(text) + [tok.eot_token_id]
    if len(ids) > context_length:  # open_clip's truncation: keep the end-of-text token
        ids = ids[:context_length]
        ids[-1] = tok.eot_token_id
    return ids


def main():
    photos_dir, open_clip_dir, out_dir = sys.argv[1:4]
    full = CLIPImageProcessor()
    crop_only = CLIPImageProcessor(do_rescale=False, do_normalize=False)
    out = {"processor": type(full).__name__, "stride": STRIDE, "photos": {}, "captions": []}
    for name in PHOTOS:
        img = ImageOps.exif_transpose(Image.open(f"{photos_dir}/{name}"))
        values = np.asarray(full(images=img)["pixel_values"][0], dtype=np.float32)
        crop = np.asarray(crop_only(images=img)["pixel_values"][0])
        assert values.shape == (3, 224, 224) and crop.shape == (3, 224, 224)
        assert np.array_equal(crop, np.round(crop)) and crop.min() >= 0 and crop.max() <= 255
        out["photos"][name] = {
            "crop_sha256": hashlib.sha256(crop.astype(np.uint8).tobytes()).hexdigest(),
            "mode": img.mode,
            "size": list(img.size),
            "values": [float(f"{v:.9g}") for v in values.reshape(-1)[::STRIDE]],
        }
    tok = open_clip_tokenizer(open_clip_dir)
    hf = hf_tokenizer(tok)
    for text in CAPTIONS:
        ids = reference_ids(tok, text)
        hf_ids = hf(text, truncation=True, max_length=77)["input_ids"]
        out["captions"].append({"text": text, "ids": ids, "transformers_agrees": hf_ids == ids})
    with open(f"{out_dir}/clip_reference.json", "w") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")


def hf_tokenizer(tok):
    vocab = dict(tok.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    ranks = sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])
    return CLIPTokenizer(vocab=vocab, merges=[pair for pair, _ in ranks])


if __name__ == "__main__":
    main()
