"""Loading the Stable Diffusion VAE (diffusers' ``AutoencoderKL``) that encodes images to DiT latents and decodes
them back: one loader for ``derf-zoo extract-latents``, ``derf-zoo sample`` and the sampling callbacks, with the
same offline handling and errors everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["DEFAULT_VAE", "load_vae"]

#: The VAE DiT was trained with (its ImageNet latents).
DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"


def load_vae(source: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """diffusers ``AutoencoderKL`` from a local folder or a Hub id, in eval mode on ``device``.

    A local folder is read as is; a Hub id goes through the Hub cache, without network when ``HF_HUB_OFFLINE`` is
    set.

    Raises:
        FileNotFoundError: a local path that does not exist, or a Hub id that cannot be fetched (offline, not
            cached), with how to provide the VAE.
    """
    from diffusers import AutoencoderKL

    path = Path(source).expanduser()
    looks_local = path.is_absolute() or source.startswith((".", "~")) or source.count("/") != 1
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"VAE folder {path} has no config.json: give a folder written by "
                                    "AutoencoderKL.save_pretrained (config.json + weights).")  # fmt: skip
        return AutoencoderKL.from_pretrained(str(path)).to(device).eval()
    if looks_local:
        raise FileNotFoundError(f"VAE folder {source} does not exist; give the vae argument (--vae on the command "
                                "line) a folder holding an AutoencoderKL (config.json + weights) or a Hub id such as "
                                f"{DEFAULT_VAE}.")  # fmt: skip
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return AutoencoderKL.from_pretrained(source, local_files_only=offline).to(device).eval()
    except (OSError, ValueError) as err:  # diffusers raises OSError (EnvironmentError) for missing repos/files
        raise FileNotFoundError(
            f"Could not load the VAE {source!r} from the Hugging Face Hub or its local cache ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). On a machine with Hub access run "
            f"`huggingface-cli download {source} --local-dir sd-vae` (or load it once there to fill the cache), "
            "copy the folder here and give the vae argument (--vae on the command line) path/to/sd-vae."
        ) from None
