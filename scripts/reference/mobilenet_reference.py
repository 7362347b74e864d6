#!/usr/bin/env python3
"""Reference MobileNetV2 outputs for the test photos, written as test fixtures.

Independent of the Rust code on every step: the legacy .pth is read with Python's own pickle
(no torch), preprocessing is torchvision's eval transform done with Pillow (shorter side to 256,
bilinear with antialias, centre crop 224), and the network runs in float64 numpy with unfolded
batch norms. Writes, per photo, the 224x224 crop (PNG) and the logits (JSON).

    pip install numpy pillow
    python3 scripts/reference/mobilenet_reference.py \
        PATH/TO/mobilenet_v2-b0353104.pth tests/fixtures/media/images OUT_DIR
"""
import collections
import json
import pickle
import sys

import numpy as np
from PIL import Image

PHOTOS = ["photo_02.jpg", "photo_03.webp", "photo_05.png"]
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def load_legacy_pth(path):
    dtypes = {"FloatStorage": np.float32, "LongStorage": np.int64}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return lambda storage, offset, size, stride, *rest: (storage, offset, tuple(size), tuple(stride))
            if module == "torch" and name in dtypes:
                return name
            if module == "collections" and name == "OrderedDict":
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"{module}.{name}")

        def persistent_load(self, pid):
            return pid  # ('storage', type, key, location, size, view)

    with open(path, "rb") as f:
        assert pickle.load(f) == 0x1950A86A20F9469CFC6C
        assert pickle.load(f) == 1001
        pickle.load(f)
        state = Unpickler(f).load()
        keys = pickle.load(f)
        storages = {}
        by_key = {v[0][2]: v[0][1] for v in state.values()}
        for key in keys:
            n = int(np.frombuffer(f.read(8), "<i8")[0])
            dt = dtypes[by_key[key]]
            storages[key] = np.frombuffer(f.read(n * np.dtype(dt).itemsize), dt)
    out = {}
    for name, (storage, offset, size, stride) in state.items():
        data = storages[storage[2]]
        out[name] = data[offset : offset + int(np.prod(size))].reshape(size).astype(np.float64)
    return out


def conv(x, w, stride, groups):
    c, h, wd = x.shape
    o, ci, k, _ = w.shape
    p = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    if groups == 1:
        cols = np.stack([xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride] for i in range(k) for j in range(k)], 1)
        return (w.reshape(o, ci * k * k) @ cols.reshape(c * k * k, ho * wo)).reshape(o, ho, wo)
    out = np.zeros((c, ho, wo))
    for i in range(k):
        for j in range(k):
            out += w[:, 0, i, j][:, None, None] * xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
    return out


def conv_bn(x, sd, conv_key, bn_key, stride, groups, relu6):
    y = conv(x, sd[conv_key + ".weight"], stride, groups)
    g, b = sd[bn_key + ".weight"], sd[bn_key + ".bias"]
    m, v = sd[bn_key + ".running_mean"], sd[bn_key + ".running_var"]
    y = (y - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] + b[:, None, None]
    return np.clip(y, 0, 6) if relu6 else y


def forward(sd, x):
    x = conv_bn(x, sd, "features.0.0", "features.0.1", 2, 1, True)
    cin, idx = 32, 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv."
            y, j = x, 0
            hidden = cin * t
            if t != 1:
                y = conv_bn(y, sd, p + "0.0", p + "0.1", 1, 1, True)
                j = 1
            y = conv_bn(y, sd, p + f"{j}.0", p + f"{j}.1", stride, hidden, True)
            y = conv_bn(y, sd, p + f"{j + 1}", p + f"{j + 2}", 1, 1, False)
            x = x + y if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    x = conv_bn(x, sd, f"features.{idx}.0", f"features.{idx}.1", 1, 1, True)
    feature = x.mean((1, 2))
    return sd["classifier.1.weight"] @ feature + sd["classifier.1.bias"], feature


def crop(path):
    img = Image.open(path)
    img = img.convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return img.crop((left, top, left + 224, top + 224))


def main(pth, photos_dir, out_dir):
    sd = load_legacy_pth(pth)
    result = {}
    for name in PHOTOS:
        c = crop(f"{photos_dir}/{name}")
        stem = name.rsplit(".", 1)[0]
        c.save(f"{out_dir}/{stem}_crop224.png")
        x = ((np.asarray(c, np.float64) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
        logits, feature = forward(sd, x)
        result[name] = {
            "crop": f"{stem}_crop224.png",
            "logits": [round(float(v), 6) for v in logits],
            "feature_l2": float(np.linalg.norm(feature)),
            "top5": [int(i) for i in np.argsort(-logits)[:5]],
        }
    json.dump(result, open(f"{out_dir}/mobilenet_reference.json", "w"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
