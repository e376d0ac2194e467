#!/usr/bin/python3
"""tests/torch_cross_entropy.py — PyTorch's torch.nn.functional.cross_entropy values that
tests/test_cross_entropy_torch.cpp holds parity's SOFTMAX_XENT to (ABI 7: reduction and
ignore_index): the loss and the gradient of the logits, for every reduction, with ignore_index
outside the classes, equal to a class, absent, and with every row ignored.

  /usr/bin/python3 tests/torch_cross_entropy.py --write tests/data/cross_entropy_torch.json
  /usr/bin/python3 tests/torch_cross_entropy.py --check tests/data/cross_entropy_torch.json

--write (re)generates the committed file; --check (CTest's TorchReference.CrossEntropyValues)
recomputes every value with the torch installed here and fails when the file differs, so the
C++ test's expectations are PyTorch's, not a copy of parity's own output.

The logits are multiples of 1/64 in [-4, 4], exact in float32, and torch computes in float64, so
the expected values are the exact semantics up to float64 rounding. torch writes a NaN loss (the
mean over no row) as JSON null.
Needs Debian's python3-torch (only /usr/bin/python3 sees it).
"""
import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

N, K = 6, 4


def logits():
    # A fixed pattern, not a random draw: the same numbers with any torch version.
    return [[((7 * n + 13 * k) % 33 - 16) / 8.0 + (n - k) / 64.0 for k in range(K)] for n in range(N)]


# (name, labels, ignore_index or None, reduction)
CASES = []
for reduction in ("mean", "sum", "none"):
    CASES += [
        (f"no ignore_index, {reduction}", [0, 3, 1, 1, 2, 2], None, reduction),
        (f"ignore_index -100 on rows 2 and 4, {reduction}", [0, 3, -100, 1, -100, 2], -100, reduction),
        (f"ignore_index 1, a class, {reduction}", [0, 3, 1, 1, 2, 2], 1, reduction),
        (f"every row ignored, {reduction}", [-100] * N, -100, reduction),
    ]

# The seed of the backward: dL/dloss, one value or one per row.
SEED_ONE = [0.75]
SEED_ROWS = [0.5, -1.25, 2.0, 0.25, -0.75, 1.5]


def plain(values):
    return [None if math.isnan(v) else v for v in values]


def compute():
    out = {"torch": torch.__version__, "n": N, "k": K, "logits": [v for row in logits() for v in row], "cases": []}
    for name, labels, ignore_index, reduction in CASES:
        x = torch.tensor(logits(), dtype=torch.float64, requires_grad=True)
        y = torch.tensor(labels, dtype=torch.int64)
        kwargs = {"reduction": reduction}
        if ignore_index is not None:
            kwargs["ignore_index"] = ignore_index
        loss = F.cross_entropy(x, y, **kwargs)
        seed = SEED_ROWS if reduction == "none" else SEED_ONE
        loss.backward(torch.tensor(seed, dtype=torch.float64).reshape(loss.shape))
        out["cases"].append({
            "name": name,
            "labels": labels,
            "ignore_index": ignore_index,
            "reduction": reduction,
            "dloss": seed,
            "loss": plain(loss.detach().reshape(-1).tolist()),
            "dlogits": plain(x.grad.reshape(-1).tolist()),
        })
    return out


def same(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if k != "torch")
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-12 * max(1.0, abs(a))
    return a == b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    a = ap.parse_args()
    values = compute()
    if a.write:
        with open(a.write, "w") as f:
            json.dump(values, f, indent=1)
            f.write("\n")
        print(f"wrote {len(values['cases'])} cases (torch {values['torch']}) to {a.write}")
        return 0
    with open(a.check) as f:
        committed = json.load(f)
    if not same(values, committed):
        print(f"{a.check} differs from what torch {torch.__version__} computes now; regenerate it with --write "
              "and look at why", file=sys.stderr)
        return 1
    print(f"{a.check}: all {len(values['cases'])} cases are torch {torch.__version__}'s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
