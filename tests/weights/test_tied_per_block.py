"""A Tied rule whose key has a placeholder its source lacks: one tensor of ours the upstream repeats in every block
(diffusers' DiT keeps the shared timestep embedder in each block)."""

import pytest
import torch

from derf_zoo.weights import Layout, LayoutError, Rename, Tied

LAYOUT = Layout("toy per-block copies", (
    Rename("emb.{p}", "blocks.0.emb.{p}"),
    Tied("blocks.{i}.emb.{p}", same_as="blocks.0.emb.{p}"),
    Rename("layers.{i}.{p}", "blocks.{i}.lin.{p}"),
))  # fmt: skip


def _ours():
    return {"emb.weight": torch.randn(3, 2), "layers.0.weight": torch.randn(2), "layers.1.weight": torch.randn(2),
            "layers.11.weight": torch.randn(2)}  # fmt: skip


def test_the_shared_tensor_is_written_into_every_block_and_read_back_once():
    ours = _ours()
    theirs = LAYOUT.to_theirs(ours)
    assert set(theirs) == {"blocks.0.emb.weight", "blocks.1.emb.weight", "blocks.11.emb.weight",
                           "blocks.0.lin.weight", "blocks.1.lin.weight", "blocks.11.lin.weight"}  # fmt: skip
    assert all(theirs[f"blocks.{i}.emb.weight"] is ours["emb.weight"] for i in (0, 1, 11))
    back = LAYOUT.to_ours(theirs)
    assert set(back) == set(ours) and all(torch.equal(back[k], v) for k, v in ours.items())


def test_a_copy_that_differs_is_named():
    theirs = LAYOUT.to_theirs(_ours())
    theirs["blocks.11.emb.weight"] = theirs["blocks.11.emb.weight"] + 1
    with pytest.raises(LayoutError, match=r"'blocks.11.emb.weight' should be tied to 'blocks.0.emb.weight'"):
        LAYOUT.to_ours(theirs)


def test_two_free_placeholders_are_refused():
    layout = Layout("toy", (Rename("emb", "emb"), Tied("b.{i}.c.{j}.emb", same_as="emb")))
    with pytest.raises(LayoutError, match=r"several placeholders \(\['i', 'j'\]\)"):
        layout.to_theirs({"emb": torch.ones(1)})
