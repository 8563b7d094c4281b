"""LightningDataModules per domain, and the small datasets embedded in the package."""

from derf_zoo.data.digits import DigitsDataModule, load_digits
from derf_zoo.data.dna import DNATokenizer
from derf_zoo.data.fashion_mnist import FashionMNISTDataModule, load_fashion_mnist
from derf_zoo.data.generation import DigitsGenerationDataModule
from derf_zoo.data.genome import GenomeDataModule
from derf_zoo.data.genomes import EcoliVsLambdaDataModule
from derf_zoo.data.genomic_benchmarks import GenomicBenchmarksDataModule
from derf_zoo.data.images import ImageDataModule
from derf_zoo.data.latents import LatentDataModule
from derf_zoo.data.speech import SpeechDataModule
from derf_zoo.data.speech_manifest import read_manifest, write_manifest

__all__ = [
    "DNATokenizer",
    "DigitsDataModule",
    "DigitsGenerationDataModule",
    "EcoliVsLambdaDataModule",
    "FashionMNISTDataModule",
    "GenomeDataModule",
    "GenomicBenchmarksDataModule",
    "ImageDataModule",
    "LatentDataModule",
    "SpeechDataModule",
    "load_digits",
    "load_fashion_mnist",
    "read_manifest",
    "write_manifest",
]
