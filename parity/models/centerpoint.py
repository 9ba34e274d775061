"""A CenterPoint-style BEV detector in plain torch: SECOND backbone, SECFPN neck, CenterHead (seed 003)."""

from __future__ import annotations

import torch
from torch import nn

HEADS = {"heatmap": None, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}  # heatmap: num_classes


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SECOND(nn.Module):
    """Stages of Conv-BN-ReLU: a strided block, then `layer_nums[i]` more (mmdet3d's SECOND)."""

    def __init__(self, in_channels: int, out_channels: list[int], layer_nums: list[int], strides: list[int]) -> None:
        super().__init__()
        blocks = []
        cin = in_channels
        for cout, layers, stride in zip(out_channels, layer_nums, strides):
            stage = [_conv_bn_relu(cin, cout, stride)] + [_conv_bn_relu(cout, cout) for _ in range(layers)]
            blocks.append(nn.Sequential(*stage))
            cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


class SECFPN(nn.Module):
    """Upsample every stage to a common stride with transposed convolutions, then concatenate."""

    def __init__(self, in_channels: list[int], out_channels: list[int], upsample_strides: list[int]) -> None:
        super().__init__()
        self.deblocks = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(cin, cout, stride, stride=stride, bias=False), nn.BatchNorm2d(cout),
                          nn.ReLU(inplace=True))
            for cin, cout, stride in zip(in_channels, out_channels, upsample_strides)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([deblock(f) for deblock, f in zip(self.deblocks, features)], dim=1)


class SeparateHead(nn.Module):
    """One small conv branch per regression target."""

    def __init__(self, cin: int, head_channels: int, out: int, heatmap: bool) -> None:
        super().__init__()
        self.body = _conv_bn_relu(cin, head_channels)
        self.out = nn.Conv2d(head_channels, out, 3, padding=1, bias=True)
        if heatmap:
            nn.init.constant_(self.out.bias, -2.19)  # CenterPoint's focal-loss prior

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class CenterHead(nn.Module):
    """Shared conv, then a separate head per target (heatmap, reg, height, dim, rot, vel)."""

    def __init__(self, cin: int, shared_channels: int, num_classes: int) -> None:
        super().__init__()
        self.shared_conv = _conv_bn_relu(cin, shared_channels)
        self.heads = nn.ModuleDict({
            name: SeparateHead(shared_channels, shared_channels, num_classes if out is None else out, out is None)
            for name, out in HEADS.items()
        })

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.shared_conv(x)
        return {name: head(x) for name, head in self.heads.items()}


class CenterPoint(nn.Module):
    """BEV pseudo-image -> SECOND -> SECFPN -> CenterHead; returns a dict of named head outputs."""

    def __init__(self, in_channels: int = 64, out_channels: tuple[int, ...] = (64, 128, 256),
                 layer_nums: tuple[int, ...] = (3, 5, 5), strides: tuple[int, ...] = (2, 2, 2),
                 neck_channels: int = 128, upsample_strides: tuple[int, ...] = (1, 2, 4),
                 shared_channels: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = SECOND(in_channels, list(out_channels), list(layer_nums), list(strides))
        self.neck = SECFPN(list(out_channels), [neck_channels] * len(out_channels), list(upsample_strides))
        self.head = CenterHead(neck_channels * len(out_channels), shared_channels, num_classes)

    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.neck(self.backbone(bev)))


def init_weights(module: nn.Module) -> None:
    """Variance-preserving conv init (Kaiming, fan-in, ReLU) and seeded, non-trivial BN statistics.

    torch's default conv init shrinks activations layer after layer; through ~20 layers the heads would
    be nearly constant and a golden would barely depend on its input. With this init the outputs vary
    with the BEV input, and the random BN statistics make BN folding and fusion really matter.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in_axis = 1 if isinstance(m, nn.Conv2d) else 0
                fan_in = m.weight.shape[fan_in_axis] * m.weight[0, 0].numel()
                if isinstance(m, nn.ConvTranspose2d):  # each output sees in_channels * (k / stride)^2 inputs
                    fan_in = m.weight.shape[0] * max(1, m.weight[0, 0].numel() // (m.stride[0] * m.stride[1]))
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def centerpoint(num_classes: int = 10, in_channels: int = 64, **kwargs: object) -> CenterPoint:
    """CenterPoint with seeded weights and BN statistics (call under torch.manual_seed)."""
    model = CenterPoint(in_channels=in_channels, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
    init_weights(model)
    return model
