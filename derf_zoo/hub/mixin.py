"""``model.save_pretrained(folder)`` and ``model.push_to_hub(repo_id)`` on every derf_zoo model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

__all__ = ["HubMixin"]


class HubMixin:
    """Adds the Hub methods users know from timm/transformers; the logic lives in :mod:`derf_zoo.hub.folder`."""

    def save_pretrained(self, folder: str | Path, *, overwrite: bool = False, **card: Any) -> Path:
        """Write config.json, model.safetensors and a model card (``card`` fields: metrics, dataset, ...).

        A folder that already holds files is refused unless ``overwrite`` (which replaces it whole).
        """
        from derf_zoo.hub.folder import save_pretrained

        return save_pretrained(self, folder, card=card, overwrite=overwrite)  # type: ignore[arg-type]

    def push_to_hub(self, repo_id: str, *, dry_run: bool = False, private: bool = False, token: str | None = None,
                    **card: Any) -> str:  # fmt: skip
        """Save to a temporary folder and upload it; returns the commit hash (with ``dry_run``: the folder)."""
        from derf_zoo.hub.folder import push_to_hub, save_pretrained

        if dry_run:
            return str(
                save_pretrained(self, tempfile.mkdtemp(prefix="derf_zoo_push_"), card={"repo_id": repo_id, **card})
            )  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(self, tmp, card={"repo_id": repo_id, **card})  # type: ignore[arg-type]
            return push_to_hub(tmp, repo_id, private=private, token=token)
