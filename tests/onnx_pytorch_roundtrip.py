#!/usr/bin/python3
"""tests/onnx_pytorch_roundtrip.py — every built-in model through ONNX both ways, as a user does it.

For each model: `parity export` writes its ONNX file, its description and its weights; PyTorch
builds the same module from the description (bench/torch_reference/parity_models.LayerNet), loads
the weights and exports it with torch.onnx.export (opset 13, dynamic batch, TrainingMode.PRESERVE:
bench/torch_reference/export_onnx.py). Then on one random batch:

- `parity infer` of parity's export and of PyTorch's give the same logits (bitwise, or within
  the model's step threshold when an op differs: the script says which),
- both agree with the built-in model's `parity infer` (same weights) and with PyTorch's own
  forward in eval mode, within NMSE 1e-10 (float32 forward passes of these depths sum in other
  orders; the op thresholds of ops/*.cpp are 1e-10 or looser for every op here),
- PyTorch's export trains in parity (`parity train --model torch.onnx`), and `parity check
  model` passes on it (cpu against ref).

Then the first model with its loss in the graph, as a training script exports it
(F.cross_entropy summed over the batch, class 3 ignored; torch writes SoftmaxCrossEntropyLoss):
parity trains it with that loss, `parity check model` passes, and `parity eval`'s test loss (per
image: the sum over the rows not ignored, divided by the images) matches PyTorch's on the
Fashion-MNIST test set to the 4 decimals parity prints. Counting the ignored rows would move it by
about a tenth, a mean over rows instead of the per-image sum by about as much, and labels taken
from the wrong input would leave nothing to compare.

Usage: tests/onnx_pytorch_roundtrip.py PARITY_BINARY WORK_DIR [MODEL...]
Needs Debian's python3-torch, python3-numpy (only /usr/bin/python3 sees them).
"""
import gzip
import json
import os
import re
import struct
import subprocess
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench", "torch_reference"))
from parity_models import LayerNet, load_parity_weights, read_model_description, read_safetensors as read_torch_tensors  # noqa: E402

NMSE_BOUND = 1e-10


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        assert info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}"
        out[name] = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=np.float32).reshape(info["shape"])
    return out


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def nmse(got, want):
    return float(((got.astype(np.float64) - want) ** 2).sum() / max((want.astype(np.float64) ** 2).sum(), 1e-300))


IGNORED_CLASS = 3
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class WithLoss(torch.nn.Module):
    """A model and its loss in one module: what torch.onnx.export turns into a graph that ends in
    SoftmaxCrossEntropyLoss, with the labels as a second input."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, y):
        return F.cross_entropy(self.net(x), y, reduction="sum", ignore_index=IGNORED_CLASS)


def read_idx_gz(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read()[offset:], dtype=np.uint8)


def check_own_loss(parity, work, model):
    """The model with its own loss: trained, checked, and its test loss against PyTorch's."""
    base = os.path.join(work, model)
    description = read_model_description(base + ".json")
    net = LayerNet(description)
    load_parity_weights(net, read_torch_tensors(base + ".safetensors"), base + ".safetensors")
    net.eval()
    channels, height, width = net.input_shape
    own = base + ".own_loss.onnx"
    # torch warns against constant folding with PRESERVE for a module in training mode; this one is in eval mode.
    warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
    torch.onnx.export(WithLoss(net), (torch.zeros(2, channels, height, width), torch.zeros(2, dtype=torch.int64)), own,
                      opset_version=13, input_names=["x", "y"], output_names=["loss"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                      training=torch.onnx.TrainingMode.PRESERVE)
    print(run([parity, "train", "--model", own, "--limit", "2048", "--backend", "cpu"]).strip().splitlines()[-1])
    print(run([parity, "check", "model", "--model", own, "--backend", "cpu", "--against", "ref"]).strip().splitlines()[-1])
    out = run([parity, "eval", "--model", own, "--backend", "cpu"])
    found = re.search(r"test loss ([0-9.]+)", out)
    if not found:
        return [f"{model} with its own loss: no test loss in parity eval's output: {out}"]
    images = read_idx_gz(os.path.join(FASHION_MNIST, "t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 1, 28, 28)
    labels = read_idx_gz(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"), 8).astype(np.int64)
    with torch.no_grad():
        x = torch.from_numpy(images.astype(np.float32) / 255.0)
        y = torch.from_numpy(labels)
        torch_loss = float(WithLoss(net)(x, y)) / len(labels)
        mean_loss = float(F.cross_entropy(net(x), y))
    parity_loss = float(found.group(1))
    print(f"{model} with its own loss (sum, ignore_index {IGNORED_CLASS}): parity eval {parity_loss:.4f}, PyTorch "
          f"{torch_loss:.6f} (the plain mean would be {mean_loss:.6f})", flush=True)
    # parity prints 4 decimals: half a unit of the last, and float32 sums of 10,000 rows (~1e-6).
    if abs(parity_loss - torch_loss) > 5e-5 + 1e-5:
        return [f"{model} with its own loss: parity eval's test loss {parity_loss} vs PyTorch's {torch_loss:.6f}"]
    return []


def main():
    parity, work = sys.argv[1], sys.argv[2]
    models = sys.argv[3:] or ["seed-cnn", "seed-cnn-112", "seed-cnn-4conv", "lenet5", "resnet8", "mobilenet-mini"]
    os.makedirs(work, exist_ok=True)
    failures = []
    for model in models:
        base = os.path.join(work, model)
        run([parity, "export", "--model", model, "--seed", "1", "--onnx", base + ".parity.onnx", "--description",
             base + ".json", "--save-weights", base + ".safetensors"])
        run(["/usr/bin/python3", os.path.join(HERE, "..", "bench", "torch_reference", "export_onnx.py"), "--description",
             base + ".json", "--weights", base + ".safetensors", "--onnx", base + ".torch.onnx"])
        description = read_model_description(base + ".json")
        net = LayerNet(description)
        load_parity_weights(net, read_torch_tensors(base + ".safetensors"), base + ".safetensors")
        net.eval()
        shape = (5, description["input"]["channels"], description["input"]["height"], description["input"]["width"])
        x = np.random.default_rng(7).random(shape, dtype=np.float32)
        write_safetensors(base + ".x.safetensors", {"x": x})
        with torch.no_grad():
            torch_logits = net(torch.from_numpy(x)).numpy()
        logits = {}
        for what, args in [("parity export", ["--model", base + ".parity.onnx"]),
                           ("PyTorch export", ["--model", base + ".torch.onnx"]),
                           ("built-in", ["--model", model, "--weights", base + ".safetensors"])]:
            out = base + "." + what.replace(" ", "_") + ".out.safetensors"
            run([parity, "infer", *args, "--input", base + ".x.safetensors", "--output", out, "--backend", "cpu"])
            logits[what] = read_safetensors(out)["logits"]
        same = np.array_equal(logits["parity export"], logits["PyTorch export"])
        line = f"{model:15s} parity export vs PyTorch export: {'bitwise equal' if same else 'NMSE %.3g' % nmse(logits['parity export'], logits['PyTorch export'])}"
        for what in ["PyTorch export", "built-in"]:
            e = nmse(logits[what], logits["parity export"])
            if e > NMSE_BOUND:
                failures.append(f"{model}: {what} vs parity export NMSE {e:.3g} > {NMSE_BOUND}")
        e = nmse(logits["PyTorch export"], torch_logits)
        line += f"; vs PyTorch's forward: NMSE {e:.3g}"
        if e > NMSE_BOUND:
            failures.append(f"{model}: parity infer of PyTorch's export vs PyTorch's forward NMSE {e:.3g} > {NMSE_BOUND}")
        print(line, flush=True)
    # A PyTorch export trains in parity and passes the cross-backend check of its training step.
    torch_file = os.path.join(work, models[0] + ".torch.onnx")
    print(run([parity, "train", "--model", torch_file, "--limit", "2048", "--backend", "cpu"]).strip().splitlines()[-1])
    print(run([parity, "check", "model", "--model", torch_file, "--backend", "cpu", "--against", "ref"]).strip().splitlines()[-1])
    failures += check_own_loss(parity, work, models[0])
    if failures:
        sys.exit("FAILED:\n  " + "\n  ".join(failures))
    print(f"all {len(models)} models: parity's and PyTorch's ONNX exports give the same logits through parity infer")


if __name__ == "__main__":
    main()
