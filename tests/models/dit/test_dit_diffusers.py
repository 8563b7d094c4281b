"""The DiT family against diffusers' DiTTransformer2DModel: same weights, same outputs."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from derf_zoo.models.dit import from_diffusers  # noqa: E402
from derf_zoo.models.dit.embedders import timestep_embedding  # noqa: E402

CONFIG = {"num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 3, "out_channels": 6, "num_layers": 2,
          "sample_size": 8, "patch_size": 2, "num_embeds_ada_norm": 5, "norm_num_groups": 1}  # fmt: skip


def _tiny_diffusers(share_embedders=True, **config):
    torch.manual_seed(0)
    model = diffusers.DiTTransformer2DModel(**{**CONFIG, **config}).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # non-zero everything, so a wrong mapping shows
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
        if share_embedders:  # as in weights converted from the official DiT: one embedder, copied per block
            first = model.transformer_blocks[0].norm1.emb.state_dict()
            for block in model.transformer_blocks[1:]:
                block.norm1.emb.load_state_dict(first)
    return model


def _inputs(n=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.tensor([0, 317, 999]), torch.tensor([0, 4, 5])


@pytest.mark.parametrize("norm_eps", [1e-5, 1e-6])
def test_same_outputs_as_diffusers(norm_eps):
    reference = _tiny_diffusers(norm_eps=norm_eps)
    ours = from_diffusers(reference).eval()
    assert ours.t_embedder.freq_shift == 1.0 and ours.learn_sigma and ours.num_classes == 5
    x, t, y = _inputs()
    with torch.no_grad():
        expected = reference(x, timestep=t, class_labels=y).sample
        got = ours(x, t, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    print(f"max |ours - diffusers| (norm_eps={norm_eps}): {(got - expected).abs().max():.2e}")


def test_state_dict_and_config_import():
    reference = _tiny_diffusers()
    ours = from_diffusers(reference.state_dict(), config=reference.config).eval()
    x, t, y = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, y), reference(x, timestep=t, class_labels=y).sample, rtol=0, atol=1e-5)


def test_the_timestep_shift_is_the_only_embedding_difference():
    # diffusers' Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1) == ours with freq_shift=1, and
    # differs from the official (freq_shift=0) embedding: an imported model keeps diffusers' shift.
    from diffusers.models.embeddings import Timesteps

    t = torch.tensor([0.0, 10.0, 999.0])
    reference = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)(t)
    torch.testing.assert_close(timestep_embedding(t, 256, freq_shift=1), reference)
    assert (timestep_embedding(t, 256, freq_shift=0) - reference).abs().max() > 1e-2


def test_differing_block_embedders_are_refused():
    reference = _tiny_diffusers(share_embedders=False)
    with pytest.raises(ValueError, match=r"'transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.weight' should "
                       r"be tied to 'transformer_blocks.0.* every copy must equal block 0's"):
        from_diffusers(reference)


def test_unsupported_configs_are_refused():
    with pytest.raises(ValueError, match="norm_elementwise_affine=True"):
        from_diffusers(_tiny_diffusers(norm_elementwise_affine=True))
    with pytest.raises(ValueError, match="pass the model's config"):
        from_diffusers(_tiny_diffusers().state_dict())
    reference = _tiny_diffusers()
    with pytest.raises(ValueError, match=r"num_layers=28, but the weights hold 2 transformer blocks \(transformer_"):
        from_diffusers(reference.state_dict(), config={**reference.config, "num_layers": 28})


def test_the_layout_leaves_the_positions_to_the_model_and_other_layout_errors_pass_through():
    from derf_zoo.models.dit import DiT
    from derf_zoo.weights import LayoutError

    reference = _tiny_diffusers()
    ours = from_diffusers(reference)
    assert "pos_embed" not in reference.state_dict()  # diffusers does not save its fixed sin-cos table
    torch.testing.assert_close(ours.pos_embed, DiT(**ours.model_args).pos_embed, rtol=0, atol=0)
    extra = {**reference.state_dict(), "transformer_blocks.0.norm2.weight": torch.ones(32)}
    with pytest.raises(LayoutError, match=r"match no rule of the layout: 'transformer_blocks.0.norm2.weight'") as err:
        from_diffusers(extra, config=reference.config)
    assert "every copy must equal block 0's" not in str(err.value)  # only tied copies get the embedder explanation
