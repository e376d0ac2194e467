#!/usr/bin/python3
"""tests/torch_half.py — torch's float32 -> bfloat16 and float32 -> float16 conversions of a
fixed set of float32 bit patterns, which tests/test_half.cpp holds ops/kernels/half.h to.

  /usr/bin/python3 tests/torch_half.py --write tests/data/half_torch.json
  /usr/bin/python3 tests/torch_half.py --check tests/data/half_torch.json

--write (re)generates the committed file; --check (CTest's TorchReference.HalfConversions)
converts the same patterns with the torch installed here and fails when the file differs, so the
C++ test's expectations are torch's, not a copy of parity's own output.

The patterns: 1024 spread over the whole 32-bit space (every sign and exponent, varied low
bits), then the special values and rounding ties of both formats. Each row of "rows" is
[f32 bits, bf16 bits, f16 bits] (unsigned). torch 1.13 converts a tensor on the CPU with its
vectorised code, which writes every NaN as 0xFFFF in bf16 (the scalar c10::BFloat16 writes
0x7FC0); only NaN-ness is compared for NaNs. Needs Debian's python3-torch.
"""
import argparse
import json
import sys

import torch

SPECIALS = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000,
    0x00000001, 0x80000001, 0x00008000, 0x00008001, 0x00018000, 0x007FFFFF, 0x7F7FFFFF, 0x7F7F7FFF,
    0x7F7F8000, 0x477FE000, 0x477FEFFF, 0x477FF000, 0xC77FF000, 0x38800000, 0x387FE000, 0x387FC000,
    0x33800000, 0x33000000, 0x33000001, 0xB3000001, 0x33C00000, 0x32FFFFFF, 0x3F800000, 0x3F808000,
    0x3F818000, 0x3F801000, 0x3F803000, 0x3F808001, 0x3F807FFF,
]


def patterns():
    spread = [(i << 22) | ((i * 0x9E3779B1) & 0x3FFFFF) for i in range(1024)]
    return [p & 0xFFFFFFFF for p in spread] + SPECIALS


def convert():
    bits = patterns()
    signed = [b - (1 << 32) if b >= (1 << 31) else b for b in bits]
    x = torch.tensor(signed, dtype=torch.int32).view(torch.float32)
    bf16 = [v & 0xFFFF for v in x.to(torch.bfloat16).view(torch.int16).tolist()]
    f16 = [v & 0xFFFF for v in x.to(torch.float16).view(torch.int16).tolist()]
    return {"torch": torch.__version__, "rows": [list(r) for r in zip(bits, bf16, f16)]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    a = p.parse_args()
    values = convert()
    if a.write:
        with open(a.write, "w") as f:
            json.dump(values, f, separators=(",", ":"))
            f.write("\n")
        return 0
    with open(a.check) as f:
        committed = json.load(f)
    if committed["rows"] != values["rows"]:
        print(f"{a.check} differs from what torch {torch.__version__} computes now; regenerate it with --write")
        return 1
    print(f"{len(values['rows'])} conversions agree with torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
