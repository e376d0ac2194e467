#!/usr/bin/python3
"""bench/torch_reference/train_reference.py — what PyTorch reaches from parity's start.

Trains a built-in model in PyTorch (parity_models.py) and in parity from the same initial weights
(drawn here by torch's own initialisation under --seed, written as safetensors and given to
`parity train --init`) in the same batch order (parity's epoch order: a Fisher-Yates permutation
from Philox4x32-10 keyed by --seed, reproduced below), with Adam, cross-entropy, the last partial
batch trained too, then prints both test accuracies. Before it trusts the comparison it checks
that the first steps' losses agree (same weights, same images, same math: they differ only by
float32 rounding), so a wrong order, a wrong layer or a wrong name fails loudly instead of
producing a plausible number.

  /usr/bin/python3 bench/torch_reference/train_reference.py --parity build/tools/parity \\
      --model seed-cnn-4conv --threads 2 --out /tmp/ref

Needs Debian's python3-torch and python3-numpy (only /usr/bin/python3 sees them).
"""
import argparse
import csv
import gzip
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_models import MODELS, ParityDropout  # noqa: E402

MASK32 = 0xFFFFFFFF


def philox4x32(counter, key):
    """Philox4x32-10, as util/counter_rng.h."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK32, p1 & MASK32, ((p0 >> 32) ^ c3 ^ k1) & MASK32, p0 & MASK32
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def random_u64(seed, stream, index):
    b = philox4x32((index & MASK32, index >> 32, stream & MASK32, stream >> 32), (seed & MASK32, seed >> 32))
    return (b[1] << 32) | b[0]


def stream_id(name):
    """FNV-1a 64 of the stream's name, as util/counter_rng.h."""
    h = 14695981039346656037
    for ch in name.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def epoch_order(count, seed, epoch):
    """data/batcher.cpp's shuffled epoch order."""
    order = list(range(count))
    stream = (stream_id("parity.epoch_order") + epoch) & 0xFFFFFFFFFFFFFFFF
    for i in range(count - 1, 0, -1):
        j = random_u64(seed, stream, i) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x00000801:
        return np.frombuffer(data, np.uint8, count, 8).astype(np.int64)
    if magic != 0x00000803:
        raise SystemExit(f"{path}: not an IDX file of images or labels (magic {magic:#x})")
    rows, cols = struct.unpack(">II", data[8:16])
    pixels = np.frombuffer(data, np.uint8, count * rows * cols, 16).reshape(count, 1, rows, cols)
    return pixels.astype(np.float32) / np.float32(255.0)  # as data/idx.cpp: 255 -> 1.0f exactly


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise SystemExit(f"{folder}: no {stem}[.gz]")


def write_safetensors(tensors, path):
    """The safetensors format: 8-byte little-endian header size, JSON header, raw data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


def evaluate(model, images, labels, batch):
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for first in range(0, len(labels), batch):
            x = torch.from_numpy(images[first:first + batch])
            y = torch.from_numpy(labels[first:first + batch])
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return loss_sum / len(labels), 100.0 * correct / len(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parity", required=True, help="the parity program")
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    ap.add_argument("--momentum", type=float, default=0.0)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--lr-schedule", default="constant", choices=["constant", "step", "cosine"])
    ap.add_argument("--lr-step-epochs", type=int, default=1)
    ap.add_argument("--lr-gamma", type=float, default=0.1)
    ap.add_argument("--lr-min", type=float, default=0.0)
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--warmup-start-factor", type=float, default=1.0 / 3.0)
    ap.add_argument("--clip-grad-norm", type=float, default=0.0, help="torch.nn.utils.clip_grad_norm_ (0: off)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--check-steps", type=int, default=5, help="steps whose losses must agree")
    ap.add_argument("--out", required=True, help="folder for the initial weights and parity's metrics")
    a = ap.parse_args()
    if a.epochs < 1 or a.batch < 1 or a.threads < 1 or a.limit < 0:
        raise SystemExit("--epochs, --batch and --threads must be >= 1, --limit >= 0")
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)

    module_class, channels, height, width = MODELS[a.model]
    torch.manual_seed(a.seed)
    model = module_class()
    init_path = os.path.join(a.out, f"{a.model}.init.safetensors")
    write_safetensors(model.state_dict(), init_path)

    metrics_path = os.path.join(a.out, f"{a.model}.parity.csv")
    command = [a.parity, "train", "--model", a.model, "--backend", a.backend, "--init", init_path, "--seed",
               str(a.seed), "--threads", str(a.threads), "--epochs", str(a.epochs), "--batch", str(a.batch), "--lr",
               str(a.lr), "--data", a.data, "--metrics", metrics_path, "--optimizer", a.optimizer, "--weight-decay",
               repr(a.weight_decay), "--lr-schedule", a.lr_schedule, "--lr-step-epochs", str(a.lr_step_epochs),
               "--lr-gamma", repr(a.lr_gamma), "--lr-min", repr(a.lr_min), "--warmup-steps", str(a.warmup_steps),
               "--warmup-start-factor", repr(a.warmup_start_factor)]
    command += (["--limit", str(a.limit)] if a.limit else []) + (["--momentum", repr(a.momentum)] if a.momentum else [])
    command += ["--nesterov"] if a.nesterov else []
    command += ["--clip-grad-norm", repr(a.clip_grad_norm)] if a.clip_grad_norm else []
    print("$", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True)
    parity_seconds = time.time() - started
    with open(metrics_path) as f:
        rows = list(csv.DictReader(f))
    parity_steps = [float(r["loss"]) for r in rows if r["split"] == "train"]
    parity_accuracy = 100.0 * float([r for r in rows if r["split"] == "test"][-1]["accuracy"])  # a fraction

    train_x = read_idx(find(a.data, "train-images-idx3-ubyte"))
    train_y = read_idx(find(a.data, "train-labels-idx1-ubyte"))
    test_x = read_idx(find(a.data, "t10k-images-idx3-ubyte"))
    test_y = read_idx(find(a.data, "t10k-labels-idx1-ubyte"))
    if train_x.shape[1:] != (channels, height, width):
        raise SystemExit(f"images are {train_x.shape[1:]}, {a.model} expects {(channels, height, width)}")
    count = min(a.limit, len(train_y)) if a.limit else len(train_y)

    if a.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, nesterov=a.nesterov,
                                    weight_decay=a.weight_decay)
    else:
        make = torch.optim.AdamW if a.optimizer == "adamw" else torch.optim.Adam
        optimizer = make(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    # parity's schedules, as torch's schedulers stepped once per optimizer step (parity_lr_schedule)
    steps_per_epoch = (count + a.batch - 1) // a.batch
    schedulers = torch.optim.lr_scheduler
    main_schedule = None
    if a.lr_schedule == "step":
        main_schedule = schedulers.StepLR(optimizer, a.lr_step_epochs * steps_per_epoch, a.lr_gamma)
    elif a.lr_schedule == "cosine":
        main_schedule = schedulers.CosineAnnealingLR(optimizer, a.epochs * steps_per_epoch - a.warmup_steps, a.lr_min)
    scheduler = main_schedule
    if a.warmup_steps > 0:
        warmup = schedulers.LinearLR(optimizer, a.warmup_start_factor, total_iters=a.warmup_steps)
        scheduler = warmup if main_schedule is None else schedulers.SequentialLR(
            optimizer, [warmup, main_schedule], milestones=[a.warmup_steps])
    torch_steps = []
    dropouts = [m for m in model.modules() if isinstance(m, ParityDropout)]
    started = time.time()
    for epoch in range(a.epochs):
        order = np.array(epoch_order(count, a.seed, epoch), dtype=np.int64)
        model.train()
        for first in range(0, count, a.batch):
            at = order[first:first + a.batch]
            x, y = torch.from_numpy(train_x[at]), torch.from_numpy(train_y[at])
            for m in dropouts:  # parity's mask of this step (parity's steps count from 1)
                m.clock = (a.seed, len(torch_steps) + 1)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if a.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            torch_steps.append(loss.item())
    torch_seconds = time.time() - started
    _, torch_accuracy = evaluate(model, test_x, test_y, 1000)

    if len(torch_steps) != len(parity_steps):
        raise SystemExit(f"parity took {len(parity_steps)} steps, PyTorch {len(torch_steps)}")
    # Step 1 starts from identical weights on identical images: the losses differ only by
    # float32 rounding in different summation orders (relative ~1e-6). Later steps drift apart
    # slowly (Adam's first steps move each weight by about lr whatever the gradient's size, so
    # tiny gradient differences are not amplified yet); a wrong batch order or a wrong layer
    # changes the very first loss by percent.
    for step in range(min(a.check_steps, len(torch_steps))):
        p, t = parity_steps[step], torch_steps[step]
        if abs(p - t) > 1e-3 * max(1.0, abs(t)):
            raise SystemExit(f"step {step + 1}: parity's loss {p:.6f} differs from PyTorch's {t:.6f}: not the same "
                             "weights, batch order or model")
    print(f"first {min(a.check_steps, len(torch_steps))} step losses agree (step 1: parity {parity_steps[0]:.6f}, "
          f"PyTorch {torch_steps[0]:.6f})")
    print(f"{a.model}: test accuracy after {a.epochs} epoch(s): parity {parity_accuracy:.2f}% "
          f"({parity_seconds:.0f} s), PyTorch {torch.__version__} {torch_accuracy:.2f}% ({torch_seconds:.0f} s), "
          f"difference {parity_accuracy - torch_accuracy:+.2f} points")
    print(json.dumps({"model": a.model, "epochs": a.epochs, "parity_accuracy": parity_accuracy,
                      "torch_accuracy": torch_accuracy, "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
