"""Build (once, cached) and call the fused C kernel for Derf/DyT on the CPU.

The kernel source ``cpu_kernel.c`` has no torch headers, so it compiles in about a second with the
system C compiler; it is loaded with ctypes and called on raw pointers of contiguous float32 tensors
(ctypes releases the GIL). OpenMP comes from the ``libgomp.so.1`` torch already loaded, so both share
one thread pool. The shared library is cached per source, flags and CPU in ``$DERF_ZOO_CACHE``
(default ``~/.cache/derf_zoo``). No compiler, or ``DERF_ZOO_CPU_KERNEL=0``: the pure-torch fused path is
used instead, with the same numbers.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["CPU_FUNCTIONS", "cpu_backward", "cpu_forward", "cpu_kernel_available", "cpu_kernel_supports"]

logger = logging.getLogger(__name__)

# Functions the C kernel implements, by table name -> the kernel's function id.
CPU_FUNCTIONS = {"derf": 0, "dyt": 1, "tanh": 1}
_SOURCE = Path(__file__).with_name("cpu_kernel.c")
_FLAGS = [
    "-O3",
    "-march=native",
    "-mprefer-vector-width=512",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-fopenmp",
    "-fPIC",
    "-shared",
    "-std=c11",
]
_PARALLEL_MIN_NUMEL = 1 << 14
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False


def _cache_dir() -> Path:
    root = os.environ.get("DERF_ZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "derf_zoo")
    return Path(root) / "kernels"


def _cpu_signature() -> str:
    """-march=native code is only valid on this CPU model: make it part of the cache key."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + platform.processor() + flags


def _compile(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, *_FLAGS, str(_SOURCE), "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
        os.replace(out, target)  # atomic: concurrent builders (DDP ranks) never see a half-written file


def _load() -> ctypes.CDLL | None:
    global _library, _failed
    if _library is not None or _failed:
        return _library
    with _lock:
        if _library is not None or _failed:
            return _library
        if os.environ.get("DERF_ZOO_CPU_KERNEL", "1") == "0":
            _failed = True
            return None
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            logger.info("derf_zoo: no C compiler found; point-wise norms use the pure-torch fused path on CPU.")
            _failed = True
            return None
        key = hashlib.sha256(
            _SOURCE.read_bytes() + " ".join(_FLAGS).encode() + _cpu_signature().encode() + compiler.encode()
        ).hexdigest()[:16]
        target = _cache_dir() / f"pointwise_norm_{key}.so"
        try:
            if not target.exists():
                _compile(compiler, target)
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", "") or err
            logger.warning(
                "derf_zoo: building the CPU point-wise norm kernel failed (%s); using the pure-torch "
                "fused path instead.",
                str(detail).strip()[:500],
            )
            _failed = True
            return None
        i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.pointwise_norm_forward.argtypes = [ptr, ptr, i64, i64, i64, ptr, ptr, ptr, ptr, i32, i32]
        lib.pointwise_norm_forward.restype = None
        lib.pointwise_norm_backward.argtypes = [
            ptr,
            ptr,
            ptr,
            i64,
            i64,
            i64,
            ptr,
            ptr,
            ptr,
            i32,
            i32,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,
        ]
        lib.pointwise_norm_backward.restype = None
        _library = lib
        return lib


def cpu_kernel_available(function: str) -> bool:
    """Whether the compiled kernel can run ``function`` here (building it on the first call)."""
    return function in CPU_FUNCTIONS and _load() is not None


def cpu_kernel_supports(x: Tensor, function: str) -> bool:
    """Whether the C kernel runs this call: a CPU tensor of at most float32 precision (it computes in float32)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
        and cpu_kernel_available(function)
    )


def _layout(x: Tensor, channels_first: bool) -> tuple[int, int, int]:
    """(outer, C, inner) of a contiguous tensor."""
    if channels_first:
        c = x.shape[1]
        return x.shape[0], c, x.numel() // max(1, x.shape[0] * c)
    c = x.shape[-1]
    return x.numel() // max(1, c), c, 1


def _f32(t: Tensor | None) -> Tensor | None:
    """A contiguous float32 view (a copy only if needed) of a parameter."""
    return None if t is None else t.detach().contiguous().float()


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads(numel: int) -> int:
    # Below this size waking a second thread costs more than it saves (measured: benchmarks/norms.py).
    return 1 if numel < _PARALLEL_MIN_NUMEL else max(1, torch.get_num_threads())


def cpu_forward(
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    function: str,
    channels_first: bool,
) -> Tensor:
    lib = _load()
    assert lib is not None, "cpu_forward called without a built kernel"
    xf = x.contiguous().float()
    y = torch.empty_like(xf)
    a, s, w, b = _f32(alpha), _f32(shift), _f32(weight), _f32(bias)
    outer, c, inner = _layout(xf, channels_first)
    lib.pointwise_norm_forward(
        xf.data_ptr(),
        y.data_ptr(),
        outer,
        c,
        inner,
        a.data_ptr(),
        _ptr(s),
        _ptr(w),
        _ptr(b),
        CPU_FUNCTIONS[function],
        _threads(xf.numel()),
    )
    return y.to(x.dtype)


def cpu_backward(
    grad: Tensor,
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    function: str,
    channels_first: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    lib = _load()
    assert lib is not None, "cpu_backward called without a built kernel"
    xf = x.contiguous().float()
    g = grad.contiguous().float()
    dx = torch.empty_like(xf)
    a, s, w = _f32(alpha), _f32(shift), _f32(weight)
    outer, c, inner = _layout(xf, channels_first)
    threads = _threads(xf.numel())
    scratch_cols = torch.empty(threads, 2, c, dtype=torch.float32)
    scratch_scalars = torch.empty(threads, 2, dtype=torch.float64)
    dalpha = torch.empty(1, dtype=torch.float32)
    dshift = torch.empty(1, dtype=torch.float32) if s is not None else None
    dweight = torch.empty(c, dtype=torch.float32) if w is not None else None
    dbias = torch.empty(c, dtype=torch.float32) if w is not None else None
    lib.pointwise_norm_backward(
        xf.data_ptr(),
        g.data_ptr(),
        dx.data_ptr(),
        outer,
        c,
        inner,
        a.data_ptr(),
        _ptr(s),
        _ptr(w),
        CPU_FUNCTIONS[function],
        threads,
        scratch_cols.data_ptr(),
        scratch_scalars.data_ptr(),
        _ptr(dweight),
        _ptr(dbias),
        dalpha.data_ptr(),
        _ptr(dshift),
    )
    dalpha = dalpha.to(alpha.dtype)
    dshift = dshift.to(shift.dtype) if shift is not None else None
    if weight is not None:
        dweight, dbias = dweight.to(weight.dtype), dbias.to(weight.dtype)
    return dx.to(x.dtype), dalpha, dshift, dweight, dbias
