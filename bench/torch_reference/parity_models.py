"""bench/torch_reference/parity_models.py — parity's built-in models as PyTorch modules.

Each module's state_dict() names and shapes are exactly those of parity's weights for the model
of the same name (`parity summary --model NAME` lists them; train_reference.py checks it), so a
safetensors file moves between the two unchanged. LayerNet builds the same from parity's model
description file (model/model_description.h; `parity export --description` writes it), as the
LibTorch peer does (bench/torch_peer/layer_net.cpp). Run with Debian's /usr/bin/python3 (torch 1.13).
"""
import json
import struct

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


# ---- models from parity's description file (format parity-model-2) --------------------------

DESCRIPTION_FORMAT = "parity-model-2"


class LayerNet(nn.Module):
    """A model description's layers as torch modules: conv2d, linear and batchnorm2d registered
    under their dotted "module" names (nested plain modules, so state_dict keys are parity's),
    the other layers applied functionally in forward, each reading the previous layer's output or
    the layers its "inputs" name. Dropout is ParityDropout (the identity in eval mode)."""

    def __init__(self, description):
        super().__init__()
        if description.get("format") != DESCRIPTION_FORMAT:
            raise ValueError(f"model description format is {description.get('format')!r}; this reads {DESCRIPTION_FORMAT}")
        self.name = description["name"]
        self.input_shape = (description["input"]["channels"], description["input"]["height"],
                            description["input"]["width"])
        self.layers = description["layers"]
        self._modules_by_layer = {}
        self._dropouts = nn.ModuleList()  # registered so that eval() reaches them; they hold no state
        for layer in self.layers:
            op = layer["op"]
            if op == "conv2d":
                module = nn.Conv2d(layer["in_channels"], layer["out_channels"], layer["kernel"], stride=layer["stride"],
                                   padding=layer["padding"], groups=layer["groups"], bias=layer["bias"])
            elif op == "linear":
                module = nn.Linear(layer["in_features"], layer["out_features"])
            elif op == "batchnorm2d":  # torch's defaults are parity's: eps 1e-5, momentum 0.1
                module = nn.BatchNorm2d(layer["channels"])
            elif op == "dropout":
                module = ParityDropout(layer["p"], layer["name"])
                self._modules_by_layer[layer["name"]] = module
                self._dropouts.append(module)
                continue
            elif op in ("relu", "tanh", "relu6", "maxpool2d", "avgpool2d", "global_avgpool", "flatten", "add"):
                continue
            else:
                raise ValueError(f"layer {layer['name']!r}: op {op!r} is not a layer of {DESCRIPTION_FORMAT}")
            self._register_path(layer["module"], module)
            self._modules_by_layer[layer["name"]] = module

    def _register_path(self, path, module):
        """Registers `module` at a dotted path ("layer1.shortcut.0"): each prefix a plain module."""
        parent = self
        parts = path.split(".")
        for part in parts[:-1]:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        if parts[-1] in parent._modules:
            raise ValueError(f"module {path!r} is registered twice")
        parent.add_module(parts[-1], module)

    def forward(self, x):
        outputs = {"x": x}
        h = x
        for layer in self.layers:
            ins = [outputs[name] for name in layer.get("inputs", [])] or [h]
            op, a = layer["op"], ins[0]
            if op in ("conv2d", "linear", "batchnorm2d", "dropout"):
                h = self._modules_by_layer[layer["name"]](a)
            elif op == "relu":
                h = F.relu(a)
            elif op == "tanh":
                h = torch.tanh(a)
            elif op == "relu6":
                h = F.relu6(a)
            elif op == "maxpool2d":
                h = F.max_pool2d(a, layer["kernel"], layer["stride"])
            elif op == "avgpool2d":
                h = F.avg_pool2d(a, layer["kernel"], layer["stride"])
            elif op == "global_avgpool":
                h = F.adaptive_avg_pool2d(a, 1)
            elif op == "flatten":
                h = torch.flatten(a, 1)
            else:  # add
                h = a + ins[1]
            outputs[layer["name"]] = h
        return h


def read_model_description(path):
    with open(path) as f:
        return json.load(f)


_SAFETENSORS_DTYPES = {"F32": np.float32, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    """name -> torch tensor of a safetensors file (F32, I32, I64: the dtypes parity writes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its header size)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if 8 + header_size > len(data):
        raise ValueError(f"{path}: header of {header_size} bytes in a file of {len(data)}")
    header = json.loads(data[8:8 + header_size])
    body = data[8 + header_size:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {entry['dtype']} (F32, I32, I64 are read)")
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: tensor {name!r} data offsets {begin}..{end} outside the {len(body)} bytes of data")
        array = np.frombuffer(body[begin:end], dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
        if array.size != int(np.prod(entry["shape"])):
            raise ValueError(f"{path}: tensor {name!r} holds {array.size} values for shape {entry['shape']}")
        tensors[name] = torch.from_numpy(array.reshape(entry["shape"]).copy())
    return tensors


def load_parity_weights(model, weights, source):
    """Copies parity's tensors (state_dict names) into `model`: every parameter and float buffer
    must be there with its shape; num_batches_tracked (which parity does not keep in a weights
    file, and which nothing reads with momentum set) may be absent; a checkpoint's optimizer.*
    tensors are ignored; any other tensor is an error (weights of another model)."""
    state = model.state_dict()
    for name, value in state.items():
        if name not in weights:
            if name.endswith(".num_batches_tracked"):
                continue
            raise ValueError(f"{source}: missing tensor {name!r} (expected {list(value.shape)})")
        if tuple(weights[name].shape) != tuple(value.shape):
            raise ValueError(f"{source}: tensor {name!r} is {list(weights[name].shape)}, the model needs "
                             f"{list(value.shape)}")
    unknown = [n for n in weights if n not in state and not n.startswith("optimizer.")]
    if unknown:
        raise ValueError(f"{source}: tensors the model does not have: {', '.join(sorted(unknown))}")
    model.load_state_dict({n: weights[n].to(state[n].dtype) for n in state if n in weights}, strict=False)
