"""bench/torch_reference/parity_models.py — parity's built-in models as PyTorch modules.

Each module's state_dict() names and shapes are exactly those of parity's weights for the model
of the same name (`parity summary --model NAME` lists them; train_reference.py checks it), so a
safetensors file moves between the two unchanged. Run with Debian's /usr/bin/python3 (torch 1.13).
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class SeedCnn(nn.Module):
    """seed-cnn: the classic small CNN on 1x28x28 (two 3x3 convs with relu and 2x2 max-pooling,
    two linear layers)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class SeedCnn4Conv(nn.Module):
    """seed-cnn-4conv: the seed document's case study, four 3x3 convs (16, 32, 64, 64 channels,
    padding 1, relu; 2x2 max-pooling after conv2 and conv4) and two linear layers."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.max_pool2d(F.relu(self.conv4(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class LeNet5(nn.Module):
    """lenet5: c1 conv 5x5 to 6 (padding 2), tanh, avgpool 2; c2 conv 5x5 to 16, tanh, avgpool 2;
    f1 400->120, f2 120->84 with tanh, f3 84->10."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(16 * 5 * 5, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c2(x)), 2)
        x = torch.tanh(self.f1(torch.flatten(x, 1)))
        x = torch.tanh(self.f2(x))
        return self.f3(x)


class BasicBlock(nn.Module):
    """A ResNet basic block: conv3x3-bn-relu-conv3x3-bn plus the shortcut (1x1 conv + bn when the
    stride or the width changes), then relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """resnet8: stem 3x3 conv to 16 (no bias) + bn + relu; layer1..layer3 one basic block each at
    16, 32, 64 channels (stride 2 in layer2 and layer3); global average pool; fc 64->10."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DepthwiseSeparable(nn.Module):
    """dw 3x3 depthwise conv, bn1, relu6, pw 1x1 conv, bn2, relu6 (convs without bias)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.relu6(self.bn1(self.dw(x)))
        return F.relu6(self.bn2(self.pw(x)))


class ParityDropout(nn.Module):
    """Dropout that applies parity's mask (parity_mask below) instead of drawing its own, so a
    PyTorch run stays comparable with parity's step by step. `clock` is (seed, step) of the
    training step; None (evaluation) is the identity."""

    def __init__(self, p, node_name):
        super().__init__()
        self.p = p
        self.node_name = node_name
        self.clock = None

    def forward(self, x):
        if not self.training or self.clock is None:
            return x
        seed, step = self.clock
        return x * torch.from_numpy(parity_mask(x.shape, self.p, seed, step, self.node_name))


class MobileNetMini(nn.Module):
    """mobilenet-mini: stem 3x3 conv (stride 1) to 32 + bn + relu6; four depthwise-separable
    blocks (64, 64, 128, 128 channels; stride 2 in blocks 1 and 3); global average pool;
    dropout 0.2; fc 128->10."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.blocks = nn.Sequential(DepthwiseSeparable(32, 64, 1), DepthwiseSeparable(64, 64, 2),
                                    DepthwiseSeparable(64, 128, 1), DepthwiseSeparable(128, 128, 2))
        self.dropout = ParityDropout(0.2, "dropout")
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu6(self.bn(self.stem(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(self.blocks(x), 1), 1)
        return self.fc(self.dropout(x))


# ---- parity's dropout mask (ops/kernels/dropout.h, parity_dropout_params in parity/plugin.h)

_M32 = np.uint64(0xFFFFFFFF)


def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 over numpy arrays of counters (uint64 holding 32-bit words)."""
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _M32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _M32
        k0 = (k0 + np.uint64(0x9E3779B9)) & _M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & _M32
    return c0, c1, c2, c3


def parity_node_key(name):
    """GraphBuilder's dropout_node_key: FNV-1a 64 of the node name, folded to 32 bits."""
    h = 14695981039346656037
    for ch in name.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 32)) & 0xFFFFFFFF


def parity_mask(shape, p, seed, step, node_name, first_sample=0):
    """The float32 mask (0 or 1/(1-p)) parity's dropout node `node_name` applies at `step`."""
    samples = shape[0]
    per_sample = int(np.prod(shape[1:]))
    quads = (per_sample + 3) // 4
    n = np.repeat(np.arange(samples, dtype=np.uint64) + np.uint64(first_sample), quads)
    q = np.tile(np.arange(quads, dtype=np.uint64), samples)
    words = _philox4x32_10(q, n, np.full_like(q, step), np.full_like(q, parity_node_key(node_name)),
                           np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32))
    draws = np.stack(words, axis=1).reshape(samples, quads * 4)[:, :per_sample]
    keep = (draws >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24) >= np.float32(p)
    scale = np.float32(1.0) / np.float32(1.0 - p)
    return np.where(keep, scale, np.float32(0.0)).astype(np.float32).reshape(shape)


# parity's model name -> (module class, input channels, height, width)
MODELS = {
    "seed-cnn": (SeedCnn, 1, 28, 28),
    "seed-cnn-4conv": (SeedCnn4Conv, 1, 28, 28),
    "lenet5": (LeNet5, 1, 28, 28),
    "resnet8": (ResNet8, 1, 28, 28),
    "mobilenet-mini": (MobileNetMini, 1, 28, 28),
}
