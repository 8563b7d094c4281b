import shutil

import pytest
from huggingface_hub import constants

import derf_zoo

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def seed_hub_cache(cache, repo_id, folder, commit=FAKE_COMMIT, branch="main"):
    """Lay out ``folder``'s files as the Hub cache does after a download of ``repo_id`` at ``commit``."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        shutil.copy2(f, snapshot / f.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / branch).write_text(commit)
    return snapshot


@pytest.fixture
def seed():
    """``seed(cache, repo_id, folder, commit=FAKE_COMMIT)`` lays a folder out as a downloaded Hub repo."""
    return seed_hub_cache


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hub cache, offline: every Hub call is served from it or fails."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_folder(tmp_path):
    """A saved tiny digits ViT (random weights) and the model itself."""
    model = derf_zoo.vit_nano_derf(embed_dim=32, depth=2, num_heads=2).eval()
    folder = model.save_pretrained(tmp_path / "folder", metrics={"acc1": 12.5}, dataset="digits", split="val")
    return model, folder
