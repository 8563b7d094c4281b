"""Activations kept for the backward (derf_zoo.benchmarking.memory), against a closed form."""

import torch

from derf_zoo.benchmarking.memory import kept_activation_bytes, param_ptrs


def test_kept_bytes_count_saved_tensors_once_and_leave_parameters_out():
    layer = torch.nn.Linear(16, 16, bias=False)
    x = torch.randn(8, 16, requires_grad=True)
    # a linear layer saves its input (8 x 16 floats) for the weight's gradient; its weight is a parameter
    assert kept_activation_bytes(lambda: layer(x), param_ptrs(layer)) == 8 * 16 * 4
    # tanh saves its output; x * x saves x twice (one storage, counted once)
    assert kept_activation_bytes(lambda: torch.tanh(x), set()) == 8 * 16 * 4
    assert kept_activation_bytes(lambda: x * x, set()) == 8 * 16 * 4
    with torch.no_grad():
        assert kept_activation_bytes(lambda: layer(x), set()) == 0
