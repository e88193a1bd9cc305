"""convcli: convolution, pooling and transposed convolution on images, exact to PyTorch.

The operations are plain functions on numpy arrays (H x W or H x W x C)::

    from convcli import filter2d, pool2d, conv_transpose2d, parse_kernel

Names are imported lazily so that ``import convcli`` (and ``convcli shape``)
does not pay for numpy.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "filter2d": "filtering",
    "pool2d": "pooling",
    "conv_transpose2d": "transposed",
    "pad2d": "padding",
    "parse_kernel": "kernels",
    "gaussian_kernel": "kernels",
    "box_kernel": "kernels",
    "bilinear_kernel": "kernels",
    "nearest_kernel": "kernels",
    "load_image": "imagefile",
    "ConvcliError": "errors",
    "conv_output_size": "geometry",
    "pool_output_size": "geometry",
    "tconv_output_size": "geometry",
    "same_padding": "geometry",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'convcli' has no attribute {name!r}")


def __dir__():
    return __all__
