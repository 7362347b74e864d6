#!/usr/bin/env python3
"""The onnxruntime side of `mediasift bench vision`: items/s of an ONNX model on fixed random
inputs, at the given batch sizes, on the given number of threads. Prints JSON. An image model
gets float inputs of its declared shape; a text model (int64 inputs: input_ids,
attention_mask) gets `--tokens` token ids per item and a full mask.

    pip install onnxruntime numpy
    python3 scripts/bench/onnx_peer.py MODEL.onnx --batches 1,8,32 --seconds 3 --threads 2
    python3 scripts/bench/onnx_peer.py --matmul 1024 --seconds 3   # numpy (OpenBLAS) f32 peak
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--matmul", type=int, help="time an n×n×n f32 numpy matmul instead")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    a = ap.parse_args()
    if a.matmul:
        return matmul(a.matmul, a.seconds)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    inputs = s.get_inputs()
    out = {"onnxruntime": ort.__version__, "results": {}}
    rng = np.random.default_rng(0)
    for b in [int(x) for x in a.batches.split(",")]:
        if inputs[0].type == "tensor(int64)":
            ids = rng.integers(1000, 21000, (b, a.tokens), dtype=np.int64)
            feed = {i.name: ids if i.name == "input_ids" else np.ones_like(ids) for i in inputs}
        else:
            shape = [d if isinstance(d, int) else 1 for d in inputs[0].shape]
            feed = {inputs[0].name: rng.standard_normal([b] + shape[1:]).astype(np.float32)}
        s.run(None, feed)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            s.run(None, feed)
            n += b
        out["results"][str(b)] = n / (time.perf_counter() - t0)
    print(json.dumps(out))


def matmul(n, seconds):
    x = np.random.default_rng(0).standard_normal((2, n, n)).astype(np.float32)
    x[0] @ x[1]
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x[0] @ x[1]
        k += 1
    gflops = k * 2 * n**3 / (time.perf_counter() - t0) / 1e9
    print(json.dumps({"numpy": np.__version__, "results": {str(n): gflops}}))


if __name__ == "__main__":
    main()
