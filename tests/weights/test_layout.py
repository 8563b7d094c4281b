"""The weight-layout engine: each rule both ways, and every refusal a silent loader would get wrong."""

import pytest
import torch
from torch import nn

from derf_zoo.weights import (
    TRANSPOSE,
    Fuse,
    Ignored,
    Layout,
    LayoutError,
    OursOnly,
    Rename,
    Tied,
    fresh_norm_prefixes,
    load_layout,
)

LAYOUT = Layout("upstream", (
    Fuse("blocks.{i}.qkv.weight", ("h.{i}.q.weight", "h.{i}.k.weight", "h.{i}.v.weight")),
    Rename("blocks.{i}.fc.weight", "h.{i}.conv1d.weight", TRANSPOSE),
    Ignored("h.{i}.attn_mask"),  # before the catch-all below: the first matching rule wins
    Rename("blocks.{i}.{rest}", "h.{i}.{rest}"),
    Rename("embed.weight", "wte.weight"),
    Tied("lm_head.weight", same_as="wte.weight"),
    OursOnly("rope.{p}"),
), strip_prefixes=("_orig_mod.",))  # fmt: skip


def _theirs(layers=2):
    g = torch.Generator().manual_seed(0)
    sd = {"wte.weight": torch.randn(5, 4, generator=g)}
    sd["lm_head.weight"] = sd["wte.weight"].clone()
    for i in range(layers):
        sd |= {f"h.{i}.{n}.weight": torch.randn(4, 4, generator=g) for n in "qkv"}
        sd |= {f"h.{i}.conv1d.weight": torch.randn(4, 6, generator=g), f"h.{i}.norm.bias": torch.randn(4, generator=g),
               f"h.{i}.mlp.fc2.weight": torch.randn(4, 6, generator=g), f"h.{i}.attn_mask": torch.ones(3, 3)}
    return sd


def test_every_rule_maps_in_as_declared():
    theirs = _theirs()
    ours = LAYOUT.to_ours(theirs)
    assert set(ours) == {"embed.weight"} | {f"blocks.{i}.{k}" for i in range(2)
                                            for k in ("qkv.weight", "fc.weight", "norm.bias", "mlp.fc2.weight")}
    torch.testing.assert_close(ours["blocks.1.qkv.weight"],
                               torch.cat([theirs[f"h.1.{n}.weight"] for n in "qkv"]), rtol=0, atol=0)
    torch.testing.assert_close(ours["blocks.0.fc.weight"], theirs["h.0.conv1d.weight"].t(), rtol=0, atol=0)
    assert ours["blocks.0.mlp.fc2.weight"] is theirs["h.0.mlp.fc2.weight"]  # {rest} spans several segments


def test_the_reverse_is_derived_exactly():
    theirs = _theirs()
    back = LAYOUT.to_theirs(LAYOUT.to_ours(theirs))
    weights = {k: v for k, v in theirs.items() if not k.endswith("attn_mask")}  # a buffer is not written out
    assert set(back) == set(weights)
    for k, v in weights.items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0, msg=k)
    ours = LAYOUT.to_ours(theirs)
    again = LAYOUT.to_ours(LAYOUT.to_theirs(ours))
    assert set(again) == set(ours) and all(torch.equal(again[k], ours[k]) for k in ours)


def test_prefixes_are_stripped_first():
    theirs = {"_orig_mod." + k: v for k, v in _theirs(1).items()}
    assert "embed.weight" in LAYOUT.to_ours(theirs)
    stripped = LAYOUT.strip(theirs)  # what an importer reads the architecture from
    assert set(stripped) == set(_theirs(1)) and all(stripped[k] is theirs["_orig_mod." + k] for k in stripped)
    with pytest.raises(LayoutError, match=r"both 'wte.weight' once"):
        LAYOUT.strip(theirs | {"wte.weight": theirs["_orig_mod.wte.weight"]})


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd | {"mystery.weight": torch.zeros(1)}, r"match no rule.*'mystery.weight'"),
    (lambda sd: {k: v for k, v in sd.items() if k != "h.1.k.weight"}, r"blocks.1.qkv.weight.*misses.*h.\{i\}.k.weight"),
    (lambda sd: sd | {"lm_head.weight": sd["wte.weight"] + 1}, r"'lm_head.weight' should be tied to 'wte.weight'"),
    (lambda sd: sd | {"_orig_mod.wte.weight": sd["wte.weight"]}, r"both 'wte.weight' once"),
])  # fmt: skip
def test_weights_outside_the_layout_are_refused_by_name(edit, message):
    with pytest.raises(LayoutError, match=message):
        LAYOUT.to_ours(edit(_theirs()))


def test_two_keys_landing_on_one_name_is_an_error_not_a_silent_overwrite():
    clash = Layout("clash", (Rename("w", "a"), Rename("w", "b")))
    with pytest.raises(LayoutError, match=r"'a' and 'b' both map onto 'w'"):
        clash.to_ours({"a": torch.zeros(1), "b": torch.ones(1)})
    clash_out = Layout("clash out", (Rename("x", "a"), Rename("y", "a")))
    with pytest.raises(LayoutError, match=r"map onto 'a'"):
        clash_out.to_theirs({"x": torch.zeros(1), "y": torch.ones(1)})


def test_a_key_of_ours_without_a_place_upstream_is_named():
    with pytest.raises(LayoutError, match=r"no place for 'extra.weight'"):
        LAYOUT.to_theirs({"embed.weight": torch.zeros(5, 4), "extra.weight": torch.zeros(1)})
    assert LAYOUT.to_theirs({"rope.freqs": torch.zeros(2)}) == {}  # ours only: dropped on the way out
    assert LAYOUT.ours_only(["rope.freqs", "embed.weight"]) == ("rope.freqs",)


class _Net(nn.Module):
    def __init__(self, norm: str = "layernorm") -> None:
        from derf_zoo.norms import get_norm_layer
        from derf_zoo.norms.sites import tag_site

        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = tag_site(get_norm_layer(norm)(4), "final")
        self.register_buffer("rope", torch.arange(4.0))


def test_load_layout_loads_strictly_and_keeps_what_the_layout_leaves_to_the_model():
    layout = Layout("net", (Rename("fc.{p}", "dense.{p}"), Rename("norm.{p}", "ln.{p}"), OursOnly("rope")))
    source = _Net()
    theirs = layout.to_theirs(source.state_dict())
    assert "rope" not in theirs
    target = load_layout(_Net(), theirs, layout, source="test")
    assert torch.equal(target.fc.weight, source.fc.weight) and torch.equal(target.rope, source.rope)
    with pytest.raises(ValueError, match=r"missing keys: norm\.bias"):
        load_layout(_Net(), {k: v for k, v in theirs.items() if k != "ln.bias"}, layout, source="test")


def test_layernorm_weights_into_a_pointwise_model_leave_its_norms_fresh():
    layout = Layout("net", (Rename("fc.{p}", "dense.{p}"), Rename("norm.{p}", "ln.{p}"), OursOnly("rope")))
    theirs = layout.to_theirs(_Net("layernorm").state_dict())
    derf = _Net("derf")
    fresh = {k: v.clone() for k, v in derf.norm.state_dict().items()}
    assert fresh_norm_prefixes(derf, layout.to_ours(theirs)) == ("norm.",)
    with pytest.raises(ValueError, match=r"missing keys: norm\.alpha, norm\.shift"):  # released weights: exact
        load_layout(_Net("derf"), theirs, layout, source="test")
    load_layout(derf, theirs, layout, source="test", fresh_norms=True)  # an importer asked for another norm
    assert all(torch.equal(derf.norm.state_dict()[k], v) for k, v in fresh.items())
    assert torch.equal(derf.fc.weight, layout.to_ours(theirs)["fc.weight"])


def test_a_norm_missing_one_of_its_weights_is_damage_not_another_norm():
    layout = Layout("net", (Rename("fc.{p}", "dense.{p}"), Rename("norm.{p}", "ln.{p}"), OursOnly("rope")))
    theirs = layout.to_theirs(_Net("derf").state_dict())
    del theirs["ln.alpha"]  # {shift, weight, bias} is no kind of norm
    assert fresh_norm_prefixes(_Net("derf"), layout.to_ours(theirs)) == ()
    for fresh in (False, True):
        with pytest.raises(ValueError, match=r"missing keys: norm\.alpha"):
            load_layout(_Net("derf"), theirs, layout, source="test", fresh_norms=fresh)


def test_two_keys_landing_on_one_part_of_a_fused_tensor_is_an_error():
    fuse = Layout("fuse", (Fuse("qkv.w", ("q.w", "k.w")), Fuse("qkv.w", ("a.w", "b.w"))))
    assert set(fuse.to_ours({"q.w": torch.zeros(1), "k.w": torch.ones(1)})) == {"qkv.w"}
    with pytest.raises(LayoutError, match=r"two keys, one of them 'a.w', are part 0 of 'qkv.w'"):
        fuse.to_ours({"q.w": torch.zeros(1), "k.w": torch.ones(1), "a.w": torch.ones(1)})


def test_a_placeholder_typo_fails_when_the_table_is_built():
    with pytest.raises(LayoutError, match=r"other placeholders"):
        Layout("typo", (Rename("blocks.{i}.w", "h.{j}.w"),))
