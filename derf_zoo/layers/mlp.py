"""The Transformer feed-forward block and the activation three families share."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["Mlp", "tanh_gelu"]


def tanh_gelu() -> nn.Module:
    """GELU with the tanh approximation (HF's ``gelu_new``): the MLP activation of DiT, HyenaDNA and GPT-2."""
    return nn.GELU(approximate="tanh")


class Mlp(nn.Module):
    """``drop2(fc2(drop1(act(fc1(x)))))``, names as timm's ``Mlp`` (``fc1``, ``fc2``, ``drop1``, ``drop2``).

    Args:
        in_features: input width.
        hidden_features: inner width (default ``in_features``).
        out_features: output width (default ``in_features``).
        act_layer: activation class (GELU).
        drop: dropout after the activation and after ``fc2``; a pair ``(after activation, after fc2)`` sets them
            apart (timm's form; fairseq's ``activation_dropout`` and ``dropout``).
        bias: biases on both linears.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float | tuple[float, float] = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        drop_act, drop_out = drop if isinstance(drop, tuple) else (drop, drop)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop_act)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
