"""A small fully connected network, with the geometric initialisation used for SDF networks."""

import math
from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["MLP"]


def _activation(name: str, softplus_beta: float) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "softplus":
        return nn.Softplus(beta=softplus_beta)
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}; expected 'relu', 'softplus' or 'sigmoid'")


class MLP(nn.Module):
    """Linear layers with an activation between them: in -> hidden... -> out.

    Args:
        in_channels: input width.
        hidden_channels: widths of the hidden layers (len(hidden_channels) + 1 linear layers).
        out_channels: output width.
        activation: between layers: "relu", or "softplus" (smooth, with non-zero second
            derivatives: use it when the output is differentiated twice, e.g. an SDF whose normal
            is differentiated again).
        output_activation: None or "sigmoid" (e.g. for colours in [0, 1]).
        softplus_beta: sharpness of the softplus (100 is close to ReLU but smooth).
        geometric_init: initialise so that every output starts as the signed distance to a
            sphere of radius `init_radius` around the origin of the first `num_position_channels`
            inputs (positions; the other inputs start with zero weight). Needs a (near-)ReLU
            activation and at least one hidden layer.
        init_radius: sphere radius for the geometric initialisation, in input position units.
        inside_out: with the geometric initialisation, positive inside the sphere (a scene
            observed from its inside, like a LiDAR scene around the sensor), negative outside.
        num_position_channels: how many leading inputs are positions.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: Sequence[int],
        out_channels: int,
        activation: str = "relu",
        output_activation: Optional[str] = None,
        softplus_beta: float = 100.0,
        geometric_init: bool = False,
        init_radius: float = 0.5,
        inside_out: bool = False,
        num_position_channels: int = 3,
    ):
        super().__init__()
        widths = [in_channels, *hidden_channels, out_channels]
        self.linears = nn.ModuleList(
            nn.Linear(w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.activation = _activation(activation, softplus_beta)
        self.output_activation = (
            None if output_activation is None else _activation(output_activation, softplus_beta)
        )
        if geometric_init:
            if not hidden_channels:
                raise ValueError("geometric_init needs at least one hidden layer")
            self._geometric_init(init_radius, inside_out, num_position_channels)

    @torch.no_grad()
    def _geometric_init(self, radius: float, inside_out: bool, num_position_channels: int):
        """Make f(p, ...) ~ |p| - radius (or radius - |p| inside out) at initialisation."""
        for i, linear in enumerate(self.linears):
            fan_out, fan_in = linear.weight.shape
            if i == len(self.linears) - 1:
                mean = math.sqrt(math.pi) / math.sqrt(fan_in)
                sign = -1.0 if inside_out else 1.0
                nn.init.normal_(linear.weight, mean=sign * mean, std=1e-4)
                nn.init.constant_(linear.bias, -sign * radius)
            else:
                nn.init.normal_(linear.weight, 0.0, math.sqrt(2.0) / math.sqrt(fan_out))
                nn.init.zeros_(linear.bias)
                if i == 0:
                    linear.weight[:, num_position_channels:] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_channels) -> (..., out_channels)."""
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < len(self.linears) - 1:
                x = self.activation(x)
        if self.output_activation is not None:
            x = self.output_activation(x)
        return x
