#!/usr/bin/env python3
"""Reference Silero VAD outputs, written as a test fixture: per 16 kHz mono clip, the speech
probability of every 512-sample chunk from silero-vad 6.2.3's own ONNX model through
onnxruntime (the package's OnnxWrapper protocol: 64 samples of context before each chunk, the
state carried over), and the speech regions faster-whisper's `get_speech_timestamps` derives
from those probabilities with its default options.

    pip install silero-vad==6.2.3 --no-deps; pip install faster-whisper==1.2.1 onnxruntime numpy
    python3 scripts/reference/vad_reference.py tests/fixtures/media/audio OUT.json
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import faster_whisper.vad as fw_vad
from faster_whisper.vad import VadOptions, get_speech_timestamps

sys.path.insert(0, os.path.dirname(__file__))
from whisper_reference import CLIPS, pcm16  # noqa: E402


class Silero623:
    def __init__(self):
        import importlib.util
        # The package's ONNX file, found without importing silero_vad (which needs torch).
        pkg = os.path.dirname(importlib.util.find_spec("silero_vad").origin)
        path = os.path.join(pkg, "data", "silero_vad_16k_op15.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def __call__(self, audio):
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, 64), np.float32)
        out = []
        for i in range(0, len(audio), 512):
            x = np.concatenate([context, audio[None, i:i + 512]], 1)
            p, state = self.session.run(None, {"input": x, "state": state,
                                                "sr": np.array(16000, dtype="int64")})
            out.append(float(np.ravel(p)[0]))
            context = x[:, -64:]
        return np.array(out, dtype=np.float32)


def main(audio_dir, out_path):
    model = Silero623()
    fw_vad.get_vad_model = lambda: model  # faster-whisper's region logic on these probabilities
    out = {}
    for clip in CLIPS:
        audio = pcm16(os.path.join(audio_dir, clip))
        padded = np.pad(audio, (0, 512 - audio.shape[0] % 512))
        out[clip] = {"probabilities": [round(float(p), 6) for p in model(padded)],
                     "regions": get_speech_timestamps(audio, VadOptions())}
    json.dump(out, open(out_path, "w"), indent=0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
