"""Normalisation constants shared by the data modules and the models' data configs (as ``timm.data.constants``).

Data never imports a model: both sides read these.
"""

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Mean/std of scikit-learn's digits scaled from 0..16 to 0..1 and upsampled (bilinear) to 16x16, over all 1,797 images.
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3189,)
# Mean/std of Fashion-MNIST's 60,000 training images scaled to [0, 1] (the usual 0.2860 / 0.3530).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
