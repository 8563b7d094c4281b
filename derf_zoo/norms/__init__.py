"""The norm slot: point-wise norms (Derf, DyT and the searched functions), LayerNorm, RMSNorm, Identity,
the spec registry, conversion of third-party models and data-calibrated alpha."""

from derf_zoo.norms.calibrate import CalibrationReport, calibrate_alpha
from derf_zoo.norms.convert import ConversionReport, convert_norms
from derf_zoo.norms.fit import FitReport, LayerFit, fit_pointwise_norms
from derf_zoo.norms.functions import FUNCTIONS, PointwiseFunction
from derf_zoo.norms.kernels import get_default_kernel, set_default_kernel, use_kernel
from derf_zoo.norms.layers import Derf, DyT, Identity, LayerNorm, PointwiseNorm, RMSNorm
from derf_zoo.norms.registry import NormFactory, get_norm_layer, list_norms, norm_spec_string, resolve_norm_sites

__all__ = [
    "FUNCTIONS",
    "CalibrationReport",
    "ConversionReport",
    "Derf",
    "DyT",
    "FitReport",
    "Identity",
    "LayerFit",
    "LayerNorm",
    "NormFactory",
    "PointwiseFunction",
    "PointwiseNorm",
    "RMSNorm",
    "calibrate_alpha",
    "convert_norms",
    "fit_pointwise_norms",
    "get_default_kernel",
    "get_norm_layer",
    "list_norms",
    "norm_spec_string",
    "resolve_norm_sites",
    "set_default_kernel",
    "use_kernel",
]
