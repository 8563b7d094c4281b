"""LightningDataModules per domain, and the small datasets embedded in the package.

The names load on first use (PEP 562): model families import the DNA tokenizer's constants from
``derf_zoo.data.dna`` without pulling in every DataModule and Lightning with it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it
_SOURCES = {
    "CharTokenizer": "text",
    "DNATokenizer": "dna",
    "DigitsDataModule": "digits",
    "DigitsGenerationDataModule": "generation",
    "EcoliVsLambdaDataModule": "genomes",
    "FashionMNISTDataModule": "fashion_mnist",
    "GenomeDataModule": "genome",
    "GenomicBenchmarksDataModule": "genomic_benchmarks",
    "ImageDataModule": "images",
    "LatentDataModule": "latents",
    "SpeechDataModule": "speech",
    "TextDataModule": "text",
    "load_digits": "digits",
    "load_fashion_mnist": "fashion_mnist",
    "read_manifest": "speech_manifest",
    "write_manifest": "speech_manifest",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'derf_zoo.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"derf_zoo.data.{_SOURCES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})
