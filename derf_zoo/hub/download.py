"""Getting weight files: from the package, the local Hub cache, or the Hub (pinned revision), checked by sha256."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from derf_zoo.hub.manifest import ReleasedWeights

__all__ = [
    "WeightsIntegrityError",
    "WeightsNotAvailableError",
    "fetch_file",
    "refuse_pickles",
    "sha256_file",
    "verify_cached_file",
    "weights_file",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "weights.ckpt")


class WeightsNotAvailableError(FileNotFoundError):
    """A weight file is neither cached nor downloadable right now."""


class WeightsIntegrityError(ValueError):
    """A weight file does not match the sha256 the manifest pins."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in ``chunk``-byte blocks (what the manifest pins for ``model.safetensors``).

    Example:
        >>> sha256_file("derf_zoo/checkpoints/vit_nano_derf.digits/model.safetensors")[:12]
        '5c0318b7e86a'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_cached_file(path: str | Path) -> Path:
    """Check a file of the Hugging Face cache against the name of the blob it points to.

    The cache stores each file once under ``blobs/<etag>`` and links ``snapshots/<commit>/<name>`` to it; the
    etag of a large (LFS) file is its sha256, that of a small file the git blob sha1 of its content. A file
    whose content does not hash to its blob's name was corrupted or replaced in the cache. Files outside a
    cache (a local folder, or a blob name of neither form) are returned unchecked.

    Raises:
        WeightsIntegrityError: the content does not match the blob's name.
    """
    path = Path(path)
    blob = path.resolve()
    if blob.parent.name != "blobs":
        return path
    name = blob.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        got, kind = sha256_file(blob), "sha256"
    elif len(name) == 40 and all(c in "0123456789abcdef" for c in name):
        digest = hashlib.sha1(f"blob {blob.stat().st_size}\0".encode())
        with open(blob, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        got, kind = digest.hexdigest(), "git blob sha1"
    else:
        return path
    if got != name:
        raise WeightsIntegrityError(
            f"{path}: the Hub cache stores it as blob {name}, but its content has {kind} {got}: the cached file "
            f"is corrupted or was replaced. Delete {blob} and download it again."
        )
    return path


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def fetch_file(repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
               name_for_errors: str | None = None) -> Path:  # fmt: skip
    """``hf_hub_download`` with an immediate, clear error when offline and not cached.

    Without ``HF_HUB_OFFLINE`` a missing file costs huggingface_hub several retries on a dead network; in
    offline mode we look in the cache first and fail at once, naming the cache and how to fill it.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    cache = str(cache_dir or constants.HF_HUB_CACHE)
    label = name_for_errors or repo_id
    if _offline():
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
        if not isinstance(cached, str):
            raise WeightsNotAvailableError(
                f"{label}: {filename} of {repo_id}@{revision or 'main'} is not in the Hub cache {cache} and "
                f"HF_HUB_OFFLINE=1 forbids downloading it. On a connected machine run `derf-zoo download {label}` "
                "(or huggingface_hub.snapshot_download) with the same HF_HUB_CACHE, then copy the cache here."
            )
        return verify_cached_file(cached)
    try:
        path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, library_name="derf_zoo")
    except (LocalEntryNotFoundError, EntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        raise WeightsNotAvailableError(
            f"{label}: could not get {filename} from {repo_id}@{revision or 'main'} (cache {cache}): {err}"
        ) from err
    return verify_cached_file(path)


def weights_file(weights: ReleasedWeights, cache_dir: str | Path | None = None, *, verify: bool = True) -> Path:
    """The local path of a released ``model.safetensors``, verified against the manifest's sha256.

    Embedded weights come from the package; the rest from the Hub at the pinned revision (through the cache).

    Args:
        weights: the manifest entry.
        cache_dir: Hub cache (default ``$HF_HUB_CACHE``).
        verify: an entry that pins no sha256 cannot be verified and is refused unless this is False (then it
            loads with a warning; the Hub cache's own blob check still applies).

    Raises:
        WeightsIntegrityError: the file does not match the pinned sha256, or nothing is pinned and ``verify``.
    """
    if weights.sha256 is None and verify:
        raise WeightsIntegrityError(
            f"{weights.name}: the manifest pins no sha256 for these weights, so they cannot be verified; nothing was "
            "loaded. Pass verify=False (create_model(..., pretrained=True, verify=False)) to load them unverified."
        )
    embedded = weights.embedded_path()
    if embedded is not None:
        path = embedded / WEIGHTS_NAME
        if not path.is_file():
            raise WeightsNotAvailableError(f"{weights.name}: the package should hold {path}, but it is missing "
                                           "(a broken install?). Reinstall derf_zoo.")  # fmt: skip
    else:
        path = fetch_file(weights.repo_id, WEIGHTS_NAME, revision=weights.revision, cache_dir=cache_dir,
                          name_for_errors=weights.name)  # fmt: skip
    if weights.sha256 is None:
        warnings.warn(f"{weights.name}: loading {path} unverified (verify=False; the manifest pins no sha256).",
                      stacklevel=3)  # fmt: skip
        return path
    got = sha256_file(path)
    if got != weights.sha256:
        raise WeightsIntegrityError(
            f"{weights.name}: {path} has sha256 {got}, the manifest pins {weights.sha256}. "
            "The file is corrupted or not the released one; delete it and download it again."
        )
    return path


def refuse_pickles(folder: Path) -> None:
    """A folder with pickle weights and no safetensors is refused: downloaded pickles are never loaded."""
    if not (folder / WEIGHTS_NAME).is_file():
        pickles = [n for n in PICKLE_NAMES if (folder / n).is_file()]
        if pickles:
            raise WeightsIntegrityError(
                f"{folder} holds only pickle weights ({', '.join(pickles)}); derf_zoo loads safetensors only, because "
                "unpickling a downloaded file can run arbitrary code. Convert it on a machine you trust: "
                "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')."
            )
        raise WeightsNotAvailableError(f"{folder} has no {WEIGHTS_NAME}.")
