#!/usr/bin/env python3
"""The faster-whisper side of `mediasift bench audio`: wall time per clip of
`WhisperModel.transcribe` (mel, language detection, encoder and decoder; no VAD, temperature 0)
on the same CTranslate2 weights mediasift converts and the same 16 kHz samples (raw float32
files), per compute type and beam size. Prints JSON.

    pip install faster-whisper==1.2.1 numpy
    python3 scripts/bench/whisper_peer.py whisper-base CLIPS_DIR --threads 2 --beams 1,5
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from faster_whisper import WhisperModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from whisper_reference import ct2_dir  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_id")
    ap.add_argument("clips_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--compute-types", default="float32,int8")
    ap.add_argument("--word-timestamps", action="store_true")
    a = ap.parse_args()
    clips = sorted(f for f in os.listdir(a.clips_dir) if f.endswith(".f32"))
    audio = {c: np.fromfile(os.path.join(a.clips_dir, c), dtype="<f4") for c in clips}
    out = {"faster_whisper": __import__("faster_whisper").__version__, "results": {}}
    with tempfile.TemporaryDirectory() as work:
        path = ct2_dir(a.model_id, work)
        for ct in a.compute_types.split(","):
            model = WhisperModel(path, device="cpu", compute_type=ct, cpu_threads=a.threads)
            # Warm-up: first-call allocations are not the steady state.
            list(model.transcribe(audio[clips[0]], beam_size=1, temperature=0.0)[0])
            for beam in a.beams.split(","):
                res = {}
                for c in clips:
                    t0 = time.perf_counter()
                    segments, _ = model.transcribe(audio[c], beam_size=int(beam),
                                                   temperature=0.0, vad_filter=False,
                                                   word_timestamps=a.word_timestamps)
                    tokens = [t for s in segments for t in s.tokens]
                    res[c] = {"secs": time.perf_counter() - t0, "tokens": tokens}
                out["results"].setdefault(ct, {})[beam] = res
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
