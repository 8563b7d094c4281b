"""LightningDataModules per domain, and the small datasets embedded in the package."""

from derf_zoo.data.digits import DigitsDataModule, load_digits
from derf_zoo.data.fashion_mnist import FashionMNISTDataModule, load_fashion_mnist
from derf_zoo.data.images import ImageDataModule

__all__ = ["DigitsDataModule", "FashionMNISTDataModule", "ImageDataModule", "load_digits", "load_fashion_mnist"]
