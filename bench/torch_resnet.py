"""He et al. 2016's CIFAR ResNets as pytorch_resnet_cifar10 (Yerlan Idelbayev) defines them.

The reference twin of sprig's zoo models resnet20/32/56 (option-A shortcuts) and resnet20b
(option B: 1x1 conv + BN), for the PyTorch side of the benchmarks and interchange tests.
Module names are pytorch_resnet_cifar10's (conv1, bn1, layer1.0.conv1, ..., linear), so its
state_dicts load here and in sprig by name. Initialisation is PyTorch's default for Conv2d and
Linear (as sprig's), not the repository's kaiming_normal_.
"""

import torch.nn as nn
import torch.nn.functional as F


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1, option="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                pad = planes // 4
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, n, in_channels=3, num_classes=10, option="A"):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, n, 1, option)
        self.layer2 = self._stage(32, n, 2, option)
        self.layer3 = self._stage(64, n, 2, option)
        self.linear = nn.Linear(64, num_classes)

    def _stage(self, planes, n, stride, option):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s, option))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


ZOO = {"resnet20": (3, "A"), "resnet32": (5, "A"), "resnet56": (9, "A"), "resnet20b": (3, "B")}


def build(name, in_channels):
    n, option = ZOO[name]
    return ResNet(n, in_channels, option=option)
