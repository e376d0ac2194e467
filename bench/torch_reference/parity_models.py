"""bench/torch_reference/parity_models.py — parity's built-in models as PyTorch modules.

Each module's state_dict() names and shapes are exactly those of parity's weights for the model
of the same name (`parity summary --model NAME` lists them; train_reference.py checks it), so a
safetensors file moves between the two unchanged. Run with Debian's /usr/bin/python3 (torch 1.13).
"""
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


# parity's model name -> (module class, input channels, height, width)
MODELS = {
    "seed-cnn": (SeedCnn, 1, 28, 28),
    "seed-cnn-4conv": (SeedCnn4Conv, 1, 28, 28),
}
