#!/usr/bin/env python3
"""ONNX graphs of the same networks mediasift runs, for the onnxruntime side of
`mediasift bench vision`, built from the same weights with onnx.helper (no torch: an export
would need it). Each graph is checked against the repo's reference fixtures before use, so the
peer computes the same function as ours.

    pip install onnx onnxruntime numpy pillow safetensors
    python3 scripts/bench/onnx_models.py mobilenet mobilenet_v2-b0353104.pth OUT.onnx
    python3 scripts/bench/onnx_models.py minilm all-MiniLM-L6-v2/model.safetensors OUT.onnx

MobileNetV2: batch norms folded into the convolutions (what torch.onnx.export does in eval
mode). MiniLM: BERT encoder + mean pooling + L2 normalisation, inputs input_ids and
attention_mask (int64, [batch, tokens]), output the sentence vectors.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = f"{REPO}/crates/mediasift-models/tests/fixtures"
OPSET = 17


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, array, name=None):
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op, inputs, **attrs):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def model(self, inputs, output, out_shape):
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)
        g = helper.make_graph(self.nodes, "g", inputs, [out], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        onnx.checker.check_model(m)
        return m


def mobilenet(pth, out_path):
    sys.path.insert(0, f"{REPO}/scripts/reference")
    import mobilenet_reference as ref

    sd = ref.load_legacy_pth(pth)
    g = Graph()

    def conv_bn(x, conv_key, bn_key, stride, groups, relu6):
        w = sd[conv_key + ".weight"]
        gm, b = sd[bn_key + ".weight"], sd[bn_key + ".bias"]
        m, v = sd[bn_key + ".running_mean"], sd[bn_key + ".running_var"]
        scale = gm / np.sqrt(v + 1e-5)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (b - m * scale).astype(np.float32)
        p = (w.shape[2] - 1) // 2
        y = g.op("Conv", [x, g.const(wf), g.const(bf)], strides=[stride, stride], pads=[p] * 4, group=groups)
        return g.op("Clip", [y, g.const(np.float32(0)), g.const(np.float32(6))]) if relu6 else y

    x = conv_bn("input", "features.0.0", "features.0.1", 2, 1, True)
    cin, idx = 32, 1
    for t, c, n, s in ref.SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv."
            y, j = x, 0
            if t != 1:
                y = conv_bn(y, p + "0.0", p + "0.1", 1, 1, True)
                j = 1
            y = conv_bn(y, p + f"{j}.0", p + f"{j}.1", stride, cin * t, True)
            y = conv_bn(y, p + f"{j + 1}", p + f"{j + 2}", 1, 1, False)
            x = g.op("Add", [x, y]) if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    x = conv_bn(x, f"features.{idx}.0", f"features.{idx}.1", 1, 1, True)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    w = sd["classifier.1.weight"].astype(np.float32)
    logits = g.op("Gemm", [x, g.const(w), g.const(sd["classifier.1.bias"].astype(np.float32))], transB=1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])
    onnx.save(g.model([inp], logits, ["batch", 1000]), out_path)
    check_mobilenet(out_path)


def check_mobilenet(path):
    import onnxruntime as ort
    from PIL import Image

    refs = json.load(open(f"{FIXTURES}/mobilenet_reference.json"))
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for name, r in refs.items():
        crop = np.asarray(Image.open(f"{FIXTURES}/{r['crop']}").convert("RGB"), np.float64) / 255
        x = ((crop - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        logits = s.run(None, {"input": x})[0][0]
        diff = np.abs(logits - np.array(r["logits"])).max()
        assert diff < 1e-3, f"mobilenet ONNX graph differs from the reference on {name}: {diff}"


def minilm(weights, out_path):
    from safetensors.numpy import load_file

    sd = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load_file(weights).items()}
    g = Graph()
    hidden, heads = 384, 12
    head = hidden // heads

    def linear(x, name):
        y = g.op("MatMul", [x, g.const(sd[name + ".weight"].T.copy())])
        return g.op("Add", [y, g.const(sd[name + ".bias"])])

    def norm(x, name):
        return g.op(
            "LayerNormalization", [x, g.const(sd[name + ".weight"]), g.const(sd[name + ".bias"])],
            axis=-1, epsilon=1e-12,
        )

    ids = "input_ids"
    tokens = g.op("Gather", [g.op("Shape", [ids]), g.const(np.int64(1))], axis=0)
    positions = g.op("Range", [g.const(np.int64(0)), tokens, g.const(np.int64(1))])
    x = g.op("Add", [
        g.op("Gather", [g.const(sd["embeddings.word_embeddings.weight"]), ids]),
        g.op("Gather", [g.const(sd["embeddings.position_embeddings.weight"]), positions]),
    ])
    x = g.op("Add", [x, g.const(sd["embeddings.token_type_embeddings.weight"][0])])
    x = norm(x, "embeddings.LayerNorm")
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [g.const(np.float32(1)), mask]), g.const(np.float32(-1e4))])
    bias = g.op("Unsqueeze", [bias, g.const(np.array([1, 2], np.int64))])
    split = g.const(np.array([0, 0, heads, head], np.int64))
    for i in range(6):
        p = f"encoder.layer.{i}."
        q = g.op("Transpose", [g.op("Reshape", [linear(x, p + "attention.self.query"), split])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, p + "attention.self.key"), split])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, p + "attention.self.value"), split])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), g.const(np.float32(head**-0.5))]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), g.const(np.array([0, 0, hidden], np.int64))])
        x = norm(g.op("Add", [linear(ctx, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        erf = g.op("Erf", [g.op("Mul", [h, g.const(np.float32(2**-0.5))])])
        h = g.op("Mul", [g.op("Mul", [h, g.const(np.float32(0.5))]), g.op("Add", [erf, g.const(np.float32(1))])])
        x = norm(g.op("Add", [linear(h, p + "output.dense"), x]), p + "output.LayerNorm")
    m3 = g.op("Unsqueeze", [mask, g.const(np.array([2], np.int64))])
    pooled = g.op("Div", [
        g.op("ReduceSum", [g.op("Mul", [x, m3]), g.const(np.array([1], np.int64))], keepdims=0),
        g.op("ReduceSum", [m3, g.const(np.array([1], np.int64))], keepdims=0),
    ])
    l2 = g.op("ReduceL2", [pooled], axes=[1], keepdims=1)
    out = g.op("Div", [pooled, g.op("Max", [l2, g.const(np.float32(1e-12))])])
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids", "attention_mask")]
    onnx.save(g.model(inputs, out, ["batch", hidden]), out_path)
    check_minilm(out_path)


def check_minilm(path):
    import onnxruntime as ort

    refs = json.load(open(f"{FIXTURES}/minilm_reference.json"))["sentences"]
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for r in refs:
        ids = np.array([r["ids"]], np.int64)
        v = s.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        diff = np.abs(v - np.array(r["vector"])).max()
        assert diff < 1e-4, f"MiniLM ONNX graph differs from the reference on {r['text']!r}: {diff}"


if __name__ == "__main__":
    kind, weights, out = sys.argv[1:4]
    {"mobilenet": mobilenet, "minilm": minilm}[kind](weights, out)
    print(out)
