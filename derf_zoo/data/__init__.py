"""LightningDataModules per domain, and the small datasets embedded in the package."""

from derf_zoo.data.digits import DigitsDataModule, load_digits
from derf_zoo.data.generation import DigitsGenerationDataModule
from derf_zoo.data.images import ImageDataModule

__all__ = ["DigitsDataModule", "DigitsGenerationDataModule", "ImageDataModule", "load_digits"]
