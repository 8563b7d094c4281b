"""Speech data: manifests, decoding errors that name the file, fairseq-style crops, max_tokens buckets, DDP shards."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DistributedSampler

from derf_zoo.data import SpeechDataModule, read_manifest, speech_sampler, write_manifest
from derf_zoo.data.audio import AudioError, read_audio
from derf_zoo.data.speech import SpeechCollater, SpeechDataset
from derf_zoo.data.speech_sampler import LengthBucketBatchSampler

SR = 16_000


def _wav(path: Path, n: int, sr: int = SR, channels: int = 1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, channels) if channels > 1 else n)
    sf.write(path, x, sr, subtype="PCM_16")
    return path


@pytest.fixture
def corpus(tmp_path):
    """Nine valid utterances (two in a subfolder, one FLAC) of 1,000..3,000 samples."""
    root = tmp_path / "audio"
    lengths = [1000, 1200, 1500, 1700, 2000, 2200, 2500, 2800, 3000]
    for k, n in enumerate(lengths):
        _wav(root / ("spk1" if k < 2 else "spk2") / f"u{k}.{'flac' if k == 4 else 'wav'}", n, seed=k)
    return root


# ---------------------------------------------------------------- manifests


def test_manifest_round_trip(corpus, tmp_path):
    written = write_manifest(corpus, tmp_path / "m" / "train.tsv")
    lines = (tmp_path / "m" / "train.tsv").read_text().splitlines()
    assert lines[0] == str(corpus.resolve()) and lines[1] == "spk1/u0.wav\t1000" and len(lines) == 10
    assert "spk2/u4.flac\t2000" in lines
    read = read_manifest(tmp_path / "m" / "train.tsv")
    assert read.root == written.root and read.entries == written.entries
    with pytest.raises(FileExistsError, match=r"train\.tsv exists; pass overwrite=True"):
        write_manifest(corpus, tmp_path / "m" / "train.tsv")
    assert write_manifest(corpus, tmp_path / "m" / "train.tsv", extensions=("flac",), overwrite=True).entries == (
        ("spk2/u4.flac", 2000),
    )


def test_manifest_errors_name_the_file(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"speech manifest .*nope\.tsv does not exist"):
        read_manifest(tmp_path / "nope.tsv")
    bad_root = tmp_path / "bad_root.tsv"
    bad_root.write_text(f"{tmp_path / 'moved'}\nu0.wav\t1000\n")
    with pytest.raises(FileNotFoundError, match=r"bad_root\.tsv: its root folder .*moved \(line 1\) does not exist"):
        read_manifest(bad_root)
    bad_line = tmp_path / "bad_line.tsv"
    bad_line.write_text(f"{corpus}\nspk1/u0.wav\t1000\nspk1/u1.wav 1200\n")
    with pytest.raises(ValueError, match=r"bad_line\.tsv, line 3: expected 'relative_path<TAB>num_samples'"):
        read_manifest(bad_line)
    missing = tmp_path / "missing.tsv"
    missing.write_text(f"{corpus}\nspk1/u0.wav\t1000\nspk1/gone.wav\t1000\n")
    with pytest.raises(AudioError, match=r"(?s)1 of 2 files .*gone\.wav does not exist"):
        SpeechDataset(missing)
    stale = tmp_path / "stale.tsv"
    stale.write_text(f"{corpus}\nspk1/u0.wav\t999\n")
    with pytest.raises(AudioError, match=r"u0\.wav has 1000 samples but its manifest line says 999"):
        SpeechDataset(stale)


# ---------------------------------------------------------------- decoding


def test_bad_audio_errors_name_the_file_and_skip_mode_counts_them(corpus, tmp_path):
    bad = tmp_path / "bad"
    _wav(bad / "ok.wav", 2000)
    _wav(bad / "narrowband.wav", 1000, sr=8000)
    _wav(bad / "stereo.wav", 2000, channels=2)
    _wav(bad / "short.wav", 399)
    (bad / "broken.wav").write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match=r"broken\.wav cannot be read by soundfile"):
        read_audio(bad / "broken.wav")
    with pytest.raises(AudioError, match=r"narrowband\.wav is sampled at 8000 Hz, not 16000 Hz"):
        read_audio(bad / "narrowband.wav")
    with pytest.raises(AudioError, match=r"stereo\.wav has 2 channels"):
        read_audio(bad / "stereo.wav")
    with pytest.raises(FileNotFoundError, match=r"absent\.wav does not exist"):
        read_audio(bad / "absent.wav")

    lines = [str(bad), "ok.wav\t2000", "narrowband.wav\t1000", "stereo.wav\t2000", "short.wav\t399", "broken.wav\t9",
             "gone.wav\t2000"]
    (tmp_path / "bad.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(AudioError, match=r"5 of 6 files are not usable") as err:
        SpeechDataset(tmp_path / "bad.tsv", name="train")
    for name in ("narrowband.wav is sampled at 8000 Hz", "stereo.wav has 2 channels",
                 "short.wav has 399 samples at 16000 Hz, fewer than min_sample_size=400", "broken.wav cannot be read",
                 "gone.wav does not exist"):
        assert name in str(err.value)  # fmt: skip
    with pytest.warns(UserWarning, match=r"skipped 5 of 6 files \(skip_invalid: true\)") as caught:
        ds = SpeechDataset(tmp_path / "bad.tsv", skip_invalid=True)
    assert [p.name for p in ds.paths] == ["ok.wav"] and len(ds.skipped) == 5
    assert {p.name for p, _ in ds.skipped} == {"narrowband.wav", "stereo.wav", "short.wav", "broken.wav", "gone.wav"}
    assert "narrowband.wav" in str(caught[0].message)

    # asked for: resampling (soxr) and downmixing keep those files
    with pytest.warns(UserWarning, match="skipped 3 of 6"):
        ds = SpeechDataset(tmp_path / "bad.tsv", skip_invalid=True, resample=True, downmix=True)
    assert ds.sizes == [2000, 2000, 2000]  # 1,000 samples at 8 kHz -> 2,000 at 16 kHz
    import soxr

    narrow = sf.read(bad / "narrowband.wav", dtype="float32")[0]
    assert torch.equal(ds[1], torch.from_numpy(soxr.resample(narrow, 8000, SR)))
    stereo = sf.read(bad / "stereo.wav", dtype="float32")[0]
    assert torch.allclose(ds[2], torch.from_numpy(stereo.mean(1)))
    with pytest.raises(AudioError, match=r"no usable file is left"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SpeechDataset(tmp_path / "bad.tsv", skip_invalid=True, min_sample_size=5000)


def test_manifests_round_trip_folder_names_with_trailing_spaces(tmp_path):
    root = tmp_path / "audio "
    _wav(root / "spk " / "a.wav", 1000)
    written = write_manifest(root, tmp_path / "m.tsv")
    read = read_manifest(tmp_path / "m.tsv")
    assert read.root == written.root == root.resolve() and read.entries == (("spk /a.wav", 1000),)
    assert len(SpeechDataset(read)) == 1
    plain = tmp_path / "plain"
    _wav(plain / "b.wav", 1000)
    (tmp_path / "sloppy.tsv").write_text(f"{plain}  \nb.wav\t1000\n")  # fairseq strips the root line: so do we
    assert read_manifest(tmp_path / "sloppy.tsv").root == plain


def test_a_file_that_fails_mid_decode_is_named_or_skipped_when_read(tmp_path):
    # A truncated FLAC passes the header check (soundfile reports all its frames), then "lost sync" when decoded.
    root = tmp_path / "flac"
    _wav(root / "a.wav", 2000)
    _wav(root / "b.wav", 3000, seed=1)
    whole = _wav(root / "c.flac", 4000, seed=2).read_bytes()
    (root / "c.flac").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "m.tsv").write_text(f"{root}\na.wav\t2000\nb.wav\t3000\nc.flac\t4000\n")
    strict = SpeechDataset(tmp_path / "m.tsv", name="train")  # the header check cannot see it
    with pytest.raises(AudioError, match=r"train data: audio file .*c\.flac cannot be decoded.*skip_invalid: true"):
        strict[2]
    lenient = SpeechDataset(tmp_path / "m.tsv", name="train", skip_invalid=True)
    with pytest.warns(UserWarning, match=r"c\.flac cannot be decoded.*leaving it out.*1 file\(s\) left out"):
        stand_in = lenient[2]
    assert torch.equal(stand_in, lenient[1]) and list(lenient.read_failures) == [2]  # the nearest shorter one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counted once: the next epoch does not try (or warn about) it again
        assert torch.equal(lenient[2], lenient[1])


def test_normalize_gives_zero_mean_unit_variance_per_utterance(corpus, tmp_path):
    write_manifest(corpus, tmp_path / "m.tsv")
    raw, norm = SpeechDataset(tmp_path / "m.tsv"), SpeechDataset(tmp_path / "m.tsv", normalize=True)
    x, y = raw[3], norm[3]
    assert x.dtype == torch.float32 and x.abs().max() <= 1 and abs(float(x.std()) - 1) > 0.3
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std(unbiased=False)) - 1) < 1e-3
    assert torch.allclose(y, (x - x.mean()) / (x.var(unbiased=False) + 1e-5).sqrt(), atol=1e-5)


# ---------------------------------------------------------------- crops and padding


def test_crop_to_shortest_random_in_training_centred_in_validation():
    signals = [torch.arange(n, dtype=torch.float32) for n in (900, 1000, 1300)]
    val = SpeechCollater(max_sample_size=None, pad=False, random_crop=False)(signals)
    assert val["input_values"].shape == (3, 900) and bool(val["attention_mask"].all())
    assert val["input_values"][:, 0].tolist() == [0, 50, 200]  # centred: (n - 900) // 2
    assert val["attention_mask"].dtype == torch.long and val["input_values"].dtype == torch.float32
    capped = SpeechCollater(max_sample_size=500, random_crop=False)(signals)
    assert capped["input_values"].shape == (3, 500) and capped["input_values"][:, 0].tolist() == [200, 250, 400]
    train = SpeechCollater(max_sample_size=500, random_crop=True)
    torch.manual_seed(0)
    starts = {tuple(train(signals)["input_values"][:, 0].tolist()) for _ in range(8)}
    assert len(starts) > 1  # random offsets ...
    for batch in (train(signals) for _ in range(4)):  # ... of contiguous windows inside each signal
        v = batch["input_values"]
        assert torch.equal(v - v[:, :1], torch.arange(500.0).expand(3, -1)) and bool((v[:, -1] < torch.tensor(
            [900, 1000, 1300])).all())  # fmt: skip


def test_padding_mode_masks_the_padding():
    signals = [torch.ones(700), torch.ones(1000), torch.ones(1200)]
    batch = SpeechCollater(max_sample_size=1100, pad=True, random_crop=False)(signals)
    assert batch["input_values"].shape == (3, 1100)
    assert batch["attention_mask"].sum(1).tolist() == [700, 1000, 1100]
    assert torch.equal(batch["input_values"], batch["attention_mask"].float())  # zeros exactly where masked


# ---------------------------------------------------------------- batching


def _check_epoch(sampler, sizes, max_tokens):
    seen = []
    for batch in sampler:
        assert len(batch) * max(sizes[i] for i in batch) <= max_tokens
        seen += batch
    return seen


def test_bucketing_respects_max_tokens_and_covers_every_utterance_once():
    sizes = np.random.default_rng(0).integers(400, 5000, 101).tolist()
    sampler = LengthBucketBatchSampler(sizes=sizes, max_tokens=12_000, shuffle=True, seed=3, num_replicas=1, rank=0)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = _check_epoch(sampler, sizes, 12_000)
        assert sorted(seen) == list(range(101)) and len(sampler) == len(list(sampler))
        orders.append(seen)
    assert orders[0] != orders[1]  # a new order every epoch ...
    again = LengthBucketBatchSampler(sizes=sizes, max_tokens=12_000, shuffle=True, seed=3, num_replicas=1, rank=0)
    again.set_epoch(1)
    assert [i for b in again for i in b] == orders[1]  # ... fixed by (seed, epoch)
    # batches group similar lengths: far less padding than random batches of the same count would have
    padded = sum(len(b) * max(sizes[i] for i in b) for b in sampler)
    assert padded < 1.25 * sum(sizes)
    with pytest.raises(ValueError, match=r"utterance 0 has 13000 samples .*more than max_tokens=12000"):
        list(LengthBucketBatchSampler(sizes=[13_000], max_tokens=12_000, num_replicas=1, rank=0))


@pytest.mark.parametrize("n", [37, 2, 3])
def test_two_ranks_get_disjoint_shards_of_equal_length(n):
    sizes = np.random.default_rng(n).integers(400, 3000, n).tolist()
    shards = []
    for rank in (0, 1):
        sampler = LengthBucketBatchSampler(sizes=sizes, max_tokens=8000, shuffle=True, seed=1, num_replicas=2,
                                           rank=rank)  # fmt: skip
        sampler.set_epoch(5)
        shards.append(_check_epoch(sampler, sizes, 8000))
        assert len(list(sampler)) == len(sampler)
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(n))
    counts = [len(LengthBucketBatchSampler(sizes=sizes, max_tokens=8000, num_replicas=2, rank=r)) for r in (0, 1)]
    assert counts[0] == counts[1]  # no rank waits for the other at the end of an epoch


def test_fewer_utterances_than_ranks_repeat_batches_as_documented():
    # every rank must get a batch, so one utterance on three ranks is dealt three times (as DistributedSampler pads)
    shards = [list(LengthBucketBatchSampler(sizes=[1000], max_tokens=2000, num_replicas=3, rank=r)) for r in range(3)]
    assert shards == [[[0]]] * 3
    doc = " ".join(speech_sampler.__doc__.split())
    assert "fewer utterances than ranks" in doc and "repeated" in doc


def test_rank_comes_from_the_distributed_sampler_lightning_injects():
    dist = DistributedSampler(range(10), num_replicas=3, rank=2, shuffle=False)
    sampler = LengthBucketBatchSampler(dist, sizes=[1000] * 10, max_tokens=2000)
    assert (sampler.num_replicas, sampler.rank) == (3, 2)
    assert sampler.all_batches()[2::3] == list(sampler)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        LengthBucketBatchSampler(sizes=[1000], max_tokens=2000, num_replicas=2, rank=2)


# ---------------------------------------------------------------- the DataModule


def test_datamodule_on_manifests_gives_hf_style_batches(corpus, tmp_path):
    write_manifest(corpus / "spk2", tmp_path / "m" / "train.tsv")
    write_manifest(corpus / "spk1", tmp_path / "m" / "valid.tsv")
    dm = SpeechDataModule(manifest_dir=str(tmp_path / "m"), max_sample_size=2400, max_tokens=6000, pad=True)
    dm.setup("fit")
    assert len(dm.train_set) == 7 and len(dm.val_set) == 2
    batches = list(dm.train_dataloader())
    assert sorted(i for b in dm.train_dataloader().batch_sampler for i in b) == list(range(7))
    for b in batches:
        assert set(b) == {"input_values", "attention_mask"}
        assert b["input_values"].numel() <= 6000 and b["input_values"].shape[1] <= 2400
    val = [next(iter(dm.val_dataloader())) for _ in range(2)]
    assert torch.equal(val[0]["input_values"], val[1]["input_values"])  # validation crops are deterministic
    assert val[0]["attention_mask"].sum(1).tolist() == [1200, 1000]  # sorted longest first, padding masked
    assert len(list(dm.train_eval_dataloader())) == len(batches)


def test_datamodule_arguments_are_checked():
    with pytest.raises(ValueError, match=r"exactly one of manifest_dir=.*or embedded=True"):
        SpeechDataModule()
    with pytest.raises(ValueError, match=r"exactly one of"):
        SpeechDataModule(manifest_dir="x", embedded=True)
    with pytest.raises(ValueError, match=r"min_sample_size must be an integer >= 400, got 100"):
        SpeechDataModule(embedded=True, min_sample_size=100)
    with pytest.raises(ValueError, match=r"max_sample_size=250000 exceeds max_tokens=100000"):
        SpeechDataModule(embedded=True, max_tokens=100_000)
    with pytest.raises(ValueError, match=r"num_workers must be an integer >= 0"):
        SpeechDataModule(embedded=True, num_workers=-1)
    dm = SpeechDataModule(manifest_dir="/nonexistent/manifests")
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/manifests/train\.tsv does not exist"):
        dm.setup("fit")


def test_embedded_datamodule_crops_real_speech():
    dm = SpeechDataModule(embedded=True, max_sample_size=16_000, max_tokens=48_000, normalize=True, seed=0)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (14, 4)
    for b in dm.train_dataloader():
        assert b["input_values"].shape[1] == 16_000 and b["input_values"].numel() <= 48_000  # every clip > 1 s
        assert bool(b["attention_mask"].all())
    (val,) = list(dm.val_dataloader())[:1]
    assert val["input_values"].shape == (3, 16_000) and abs(float(val["input_values"].std()) - 1) < 0.3


def test_lightning_shuffles_anew_every_epoch_and_shards_under_ddp(corpus, tmp_path):
    import lightning as L
    from lightning.fabric.utilities.data import _replace_dunder_methods  # private: how Lightning prepares DDP
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader

    write_manifest(corpus, tmp_path / "m" / "train.tsv")
    write_manifest(corpus / "spk1", tmp_path / "m" / "valid.tsv")
    dm = SpeechDataModule(manifest_dir=str(tmp_path / "m"), max_sample_size=None, max_tokens=6000, pad=True, seed=0)

    class Record(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(())), []

        def training_step(self, batch, _):
            self.seen.append((self.current_epoch, batch["attention_mask"].sum(1).tolist()))  # lengths name files
            return (self.w * batch["input_values"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Record()
    L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0).fit(model, dm)  # fmt: skip
    epochs = [[n for e, lens in model.seen if e == epoch for n in lens] for epoch in (0, 1)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(dm.train_set.sizes)
    assert epochs[0] != epochs[1]  # Lightning's set_epoch reached the batch sampler

    shards = []
    for rank in (0, 1):  # what Lightning does on each of 2 DDP ranks (use_distributed_sampler, the default)
        with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
            loader = dm.train_dataloader()
        ddp = _update_dataloader(loader, DistributedSampler(loader.dataset, num_replicas=2, rank=rank),
                                 mode=RunningStage.TRAINING)  # fmt: skip
        assert (ddp.batch_sampler.num_replicas, ddp.batch_sampler.rank) == (2, rank)
        shards.append([i for b in ddp.batch_sampler for i in b])
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(9))
