#!/usr/bin/python3
"""bench/torch_reference/autocast_accuracy.py — PyTorch's column of the mixed-precision accuracy table.

Trains seed-cnn or seed-cnn-112 in PyTorch alone, as `parity train` trains them (Adam, lr 1e-3,
cross-entropy, batch 64, the last partial batch trained too, parity's epoch order: the
Fisher-Yates permutation of train_reference.py, keyed by --seed; seed-cnn-112's images are
Fashion-MNIST upsampled 4x by nearest neighbour and repeated over 3 channels, as data/batcher.cpp
fills them) at float32 and under torch.autocast("cpu", dtype=torch.bfloat16) (master weights and
the optimizer stay float32; the test set is evaluated under the same autocast), and prints the
test accuracy of each as one JSON line per run. The initial weights are torch's own
initialisation under torch.manual_seed(--seed): the same for every precision of a seed.

  /usr/bin/python3 bench/torch_reference/autocast_accuracy.py --model seed-cnn --seeds 0,1,2 \\
      --precisions f32,bf16 --threads 2

fp16 is refused: PyTorch 1.13's CPU autocast runs bfloat16 only. Needs Debian's python3-torch
(only /usr/bin/python3 sees it).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_models import SeedCnn  # noqa: E402
from train_reference import epoch_order, find, read_idx  # noqa: E402


class SeedCnn112(SeedCnn):
    """seed-cnn-112: seed-cnn's layers on 3x112x112 (model/zoo.cpp), so fc1 reads 32x28x28."""

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.fc1 = nn.Linear(32 * 28 * 28, 128)


# parity's model name -> (module class, channels, nearest-neighbour upsample factor)
GEOMETRY = {"seed-cnn": (SeedCnn, 1, 1), "seed-cnn-112": (SeedCnn112, 3, 4)}


def geometry(x, channels, upsample):
    """A batch of 1x28x28 images as data/batcher.cpp fills the model's input."""
    if upsample > 1:
        x = x.repeat_interleave(upsample, 2).repeat_interleave(upsample, 3)
    return x.expand(-1, channels, -1, -1).contiguous() if channels > 1 else x


def autocast_for(precision):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def train_one(a, seed, precision, train_x, train_y, test_x, test_y):
    module_class, channels, upsample = GEOMETRY[a.model]
    torch.manual_seed(seed)
    model = module_class()
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr)
    count = min(a.limit, len(train_y)) if a.limit else len(train_y)
    started = time.time()
    losses = []
    for epoch in range(a.epochs):
        order = np.array(epoch_order(count, seed, epoch), dtype=np.int64)
        model.train()
        for first in range(0, count, a.batch):
            at = order[first:first + a.batch]
            x = geometry(torch.from_numpy(train_x[at]), channels, upsample)
            y = torch.from_numpy(train_y[at])
            optimizer.zero_grad()
            with autocast_for(precision):  # leaving it clears the cast weights' cache each step
                loss = F.cross_entropy(model(x), y)  # autocast runs the loss in float32
            loss.backward()
            optimizer.step()  # on the float32 master weights
            losses.append(loss.item())
    seconds = time.time() - started
    model.eval()
    correct = 0
    with torch.no_grad(), autocast_for(precision):
        for first in range(0, len(test_y), 500):
            x = geometry(torch.from_numpy(test_x[first:first + 500]), channels, upsample)
            correct += (model(x).argmax(1) == torch.from_numpy(test_y[first:first + 500])).sum().item()
    assert all(p.dtype == torch.float32 for p in model.parameters()), "master weights must stay float32"
    return {"model": a.model, "precision": precision, "seed": seed, "limit": count, "epochs": a.epochs,
            "batch": a.batch, "lr": a.lr, "steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
            "test_accuracy": 100.0 * correct / len(test_y), "train_seconds": round(seconds, 1),
            "threads": a.threads, "torch_version": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(GEOMETRY))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated")
    ap.add_argument("--precisions", default="f32,bf16", help="comma-separated: f32, bf16")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    precisions = a.precisions.split(",")
    for p in precisions:
        if p in ("fp16", "f16"):
            raise SystemExit("--precisions fp16: PyTorch 1.13's CPU autocast runs bfloat16 only; "
                             "fp16 autocast is CUDA's")
        if p not in ("f32", "bf16"):
            raise SystemExit(f"--precisions: unknown precision '{p}': choose f32 or bf16")
    if a.epochs < 1 or a.batch < 1 or a.threads < 1 or a.limit < 0:
        raise SystemExit("--epochs, --batch and --threads must be >= 1, --limit >= 0")
    seeds = [int(s) for s in a.seeds.split(",")]
    torch.set_num_threads(a.threads)
    train_x = read_idx(find(a.data, "train-images-idx3-ubyte"))
    train_y = read_idx(find(a.data, "train-labels-idx1-ubyte"))
    test_x = read_idx(find(a.data, "t10k-images-idx3-ubyte"))
    test_y = read_idx(find(a.data, "t10k-labels-idx1-ubyte"))
    for seed in seeds:
        for precision in precisions:
            print(json.dumps(train_one(a, seed, precision, train_x, train_y, test_x, test_y)), flush=True)


if __name__ == "__main__":
    main()
