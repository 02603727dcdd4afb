"""The reference ImageNet-C implementation, imagecorruptions 1.1.2, made importable on today's stack.

Used only by the tests (``tests/test_corruptions.py``) and the benchmark
(``benchmarks/corruption_speed.py``) as the ground truth for :mod:`neurobias.robustness.corruptions`;
the pipeline never imports it.

imagecorruptions 1.1.2 (2020, its last release) fails on current packages in three places; this
module bridges them before importing it, without editing anything in site-packages:

1. ``from pkg_resources import resource_filename``: setuptools >= 81 no longer ships
   ``pkg_resources``. If it cannot be imported, a one-function stand-in module is put into
   ``sys.modules`` whose ``resource_filename(package, path)`` resolves ``path`` next to the
   package's ``__init__`` (all imagecorruptions asks it for are its frost textures).
2. ``glass_blur`` and ``gaussian_blur`` call ``skimage.filters.gaussian(..., multichannel=True)``;
   scikit-image >= 0.19 renamed the argument (``channel_axis=-1``) and 0.21 removed the old one.
   ``imagecorruptions.corruptions.gaussian`` (the name it imported) is replaced by a wrapper that
   translates ``multichannel=True`` into ``channel_axis=-1``.
3. ``fog``'s plasma fractal allocates with ``np.float_``, removed in NumPy 2: ``np.float_`` is set
   to ``np.float64`` if it is missing (the same type the alias used to name).

One more bridge makes the reference reproducible rather than runnable:

4. ``impulse_noise`` calls ``skimage.util.random_noise`` without ``rng``; scikit-image >= 0.21
   then draws from a fresh, unseeded ``np.random.default_rng()``, so ``np.random.seed`` did not fix
   its output (older scikit-image drew from ``np.random``). The module's ``sk`` name is pointed at
   a view of scikit-image whose ``util.random_noise`` seeds its generator from one draw of
   ``np.random`` when no ``rng`` is given. The noise model (which values flip, half salt) is
   scikit-image's own.

Everything else is imagecorruptions' own code, unchanged; all its random draws now come from
NumPy's global generator (``np.random``).
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path

import numpy as np


def _install_bridges() -> None:
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # removed in NumPy 2.0; imagecorruptions' fog uses it

    try:
        import pkg_resources  # noqa: F401  (present with setuptools < 81)
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package_or_requirement, resource_name):
            spec = importlib.util.find_spec(str(package_or_requirement))
            if spec is None or spec.origin is None:
                raise ImportError(f"cannot locate package {package_or_requirement!r}")
            return str(Path(spec.origin).parent / resource_name)

        shim.resource_filename = resource_filename
        shim.__doc__ = "Stand-in for setuptools' pkg_resources (resource_filename only), see neurobias.robustness.reference_corruptions."
        sys.modules["pkg_resources"] = shim


_install_bridges()

with warnings.catch_warnings():  # its `from scipy.ndimage.interpolation import ...` is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import imagecorruptions  # noqa: E402
    import imagecorruptions.corruptions as _ic  # noqa: E402

if not getattr(_ic.gaussian, "_neurobias_bridge", False):
    _skimage_gaussian = _ic.gaussian

    def _gaussian(image, *args, multichannel=None, **kwargs):
        if multichannel is not None and "channel_axis" not in kwargs:
            kwargs["channel_axis"] = -1 if multichannel else None
        return _skimage_gaussian(image, *args, **kwargs)

    _gaussian._neurobias_bridge = True
    _ic.gaussian = _gaussian



class _SkimageSeededFromNumpy:
    """scikit-image, except that ``util.random_noise`` without ``rng`` draws its seed from np.random."""

    def __init__(self, skimage_module):
        self._skimage = skimage_module
        self.util = types.SimpleNamespace(**vars(skimage_module.util))
        self.util.random_noise = self._random_noise

    def _random_noise(self, image, mode="gaussian", rng=None, clip=True, **kwargs):
        if rng is None:
            rng = int(np.random.randint(0, 2**31 - 1))
        return self._skimage.util.random_noise(image, mode=mode, rng=rng, clip=clip, **kwargs)

    def __getattr__(self, name):
        return getattr(self._skimage, name)


if not isinstance(_ic.sk, _SkimageSeededFromNumpy):
    _ic.sk = _SkimageSeededFromNumpy(_ic.sk)

VERSION = "1.1.2"
if getattr(imagecorruptions, "__version__", VERSION) != VERSION:  # 1.1.2 defines no __version__
    raise ImportError(f"reference_corruptions expects imagecorruptions {VERSION}")


def reference_corrupt(image: np.ndarray, name: str, severity: int) -> np.ndarray:
    """imagecorruptions.corrupt(image, severity, corruption_name=name): uint8 [H, W, 3] (or [H, W])
    -> uint8 [H, W, 3] (grey input comes back as three equal channels, as the reference does)."""
    return imagecorruptions.corrupt(np.ascontiguousarray(image), severity=int(severity), corruption_name=name)


corruption_module = _ic
"""imagecorruptions.corruptions itself (its helpers, e.g. ``plasma_fractal``, ``_motion_blur``)."""
