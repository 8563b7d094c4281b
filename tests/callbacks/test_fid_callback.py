"""FID callback: torchmetrics' FrechetInceptionDistance with an offline extractor, equal to frechet_distance."""

from urllib.error import URLError

import numpy as np
import pytest
import torch

from derf_zoo.callbacks import FID
from derf_zoo.callbacks.fid import ImageFeatures, fid_labels, resolve_feature, to_uint8
from derf_zoo.data.generation import DigitsGenerationDataModule
from derf_zoo.diffusion import feature_statistics, frechet_distance
from derf_zoo.diffusion.sampling import draw

FAST = {"sampler": "ddim", "steps": 3, "num_samples": 20, "batch_size": 8, "every_n_epochs": 1}


def direct_fid(network, extractor, num_samples=20, batch_size=8):
    """The same FID without torchmetrics: the extractor's features of the held-out digits and of the samples."""
    dm = DigitsGenerationDataModule(batch_size=8)
    dm.setup("fit")
    real = torch.cat([to_uint8(x) for x, _ in dm.val_dataloader()])
    labels = fid_labels(num_samples, network.num_classes)
    fake = torch.cat([draw(network, y, sampler="ddim", steps=3, seed=i, batch_size=len(y))
                      for i, y in enumerate(labels.split(batch_size))])  # fmt: skip
    with torch.no_grad():
        stats = [feature_statistics(extractor(images.expand(-1, 3, -1, -1)).double()) for images in (real, fake)]
    return frechet_distance(*stats[0], *stats[1])


def test_fid_equals_frechet_distance_of_the_same_features(fit_dit):
    fid = FID("vit_nano_ln.digits", **FAST)
    task, trainer = fit_dit([fid])
    assert float(trainer.callback_metrics["val/fid"]) == pytest.approx(fid.last_value)
    expected = direct_fid(task.model, resolve_feature("vit_nano_ln.digits"))
    assert expected > 0 and fid.last_value == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_reference_stats_give_the_same_value(fit_dit, tmp_path):
    extractor = resolve_feature("vit_nano_ln.digits")
    fid = FID(extractor, **FAST, reference_stats=str(tmp_path / "ref.npz"))
    # statistics of the held-out digits in the extractor's space, stored as ADM's reference batches store them
    dm = DigitsGenerationDataModule(batch_size=8)
    dm.setup("fit")
    with torch.no_grad():
        mu, sigma = feature_statistics(extractor(torch.cat([to_uint8(x) for x, _ in dm.val_dataloader()])))
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma)
    task, _ = fit_dit([fid])
    expected = direct_fid(task.model, extractor)
    assert fid.last_value == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_offline_inception_says_what_to_do(fit_dit, monkeypatch):
    fid = FID("inception", **FAST)  # builds nothing yet: the metric is made at setup, on rank 0, outside fast_dev_run
    fit_dit([FID("inception", **FAST)], fast_dev_run=True)  # skipped entirely: no Inception needed
    with pytest.raises(RuntimeError, match=r"inception.*vit_nano_ln\.digits.*inception_weights"):
        fit_dit([fid])

    def no_download(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchmetrics.image.fid.FrechetInceptionDistance", no_download)
    with pytest.raises(RuntimeError, match=r"Inception weights cannot be downloaded.*name resolution.*feature="):
        fit_dit([FID("inception", **FAST)])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_samples": 1}, r"num_samples must be an integer >= 2.*got 1"),
    ({"sampler": "euler"}, r"'euler'.*ddim, ddpm"),
    ({"cfg_scale": 0.9}, r"cfg_scale must be a finite number >= 1.*0\.9"),
    ({"cfg_scale": float("inf")}, r"cfg_scale must be a finite number >= 1.*inf"),
    ({"feature": "resnet50"}, r"'resnet50'.*'inception'.*vit_nano_ln\.digits.*import path"),
    ({"feature": "no.such.module:factory"}, r"'no\.such\.module:factory'.*'inception'"),
    ({"reference_stats": "stats.pt"}, r"\.npz.*stats\.pt"),
])  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FID(**kwargs)


def test_feature_choices():
    vit = resolve_feature("vit_nano_ln.digits")
    assert isinstance(vit, ImageFeatures) and vit.num_features == 64
    assert vit(torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)).shape == (3, 64)
    # a registered architecture without weights: random but seeded, so two callbacks agree
    a, b = resolve_feature("vit_nano_ln", seed=1), resolve_feature("vit_nano_ln", seed=1)
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert isinstance(resolve_feature("torch.nn:Flatten"), torch.nn.Flatten)
    assert resolve_feature("inception") is None


class NoValidation(DigitsGenerationDataModule):
    def val_dataloader(self):
        return []


def test_module_without_width_and_data_without_validation(fit_dit):
    with pytest.raises(ValueError, match="no num_features"):
        fit_dit([FID(torch.nn.Flatten(), **FAST)])
    with pytest.raises(ValueError, match="no validation images; pass reference_stats"):
        fit_dit([FID("vit_nano_ln.digits", **FAST)], datamodule=NoValidation(batch_size=8))


def test_released_vit_features_are_the_demo_judges():
    # FID("vit_nano_ln.digits") sees the digits as the demo's judge does (bilinear to 16x16, digits mean/std)
    from derf_zoo.diffusion.digits_judge import JudgeFeatures

    vit = resolve_feature("vit_nano_ln.digits")
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(vit(images), JudgeFeatures(vit.model)(images / 255.0))


def test_every_rank_logs_rank_zeros_value_through_the_broadcast(fit_dit, monkeypatch):
    """Single process: the value goes through ``strategy.broadcast`` and is logged. Another rank (a stand-in trainer)
    does not sample, calls the same broadcast and logs the value it receives."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    sent = []
    real = SingleDeviceStrategy.broadcast

    def spy(self, obj, src=0):
        sent.append(obj)
        return real(self, obj, src)

    monkeypatch.setattr(SingleDeviceStrategy, "broadcast", spy)
    fid = FID("vit_nano_ln.digits", **FAST)
    _, trainer = fit_dit([fid])
    assert fid.last_value in sent and float(trainer.callback_metrics["val/fid"]) == pytest.approx(fid.last_value)

    class OtherRank:
        fast_dev_run = sanity_checking = is_global_zero = False
        current_epoch = 0

        class strategy:  # stands in for trainer.strategy
            @staticmethod
            def broadcast(obj, src=0):
                assert src == 0 and obj != obj  # this rank has no value of its own (NaN)
                return 12.5

    logged = {}

    class Module:
        def log(self, name, value, **kwargs):
            logged[name] = (value, kwargs)

    other = FID("vit_nano_ln.digits", **FAST)
    other.evaluate = lambda *args: pytest.fail("only rank 0 samples")
    other.on_train_epoch_end(OtherRank(), Module())
    assert logged == {"val/fid": (12.5, {})} and other.last_value == 12.5
