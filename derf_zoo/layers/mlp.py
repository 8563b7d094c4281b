"""The Transformer feed-forward block."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))``, names as timm's ``Mlp`` (``fc1``, ``fc2``).

    Args:
        in_features: input width.
        hidden_features: inner width (default ``in_features``).
        out_features: output width (default ``in_features``).
        act_layer: activation class (GELU).
        drop: dropout after the activation and after ``fc2``.
        bias: biases on both linears.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
