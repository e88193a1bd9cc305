"""convcli: convolution, pooling and transposed convolution on images, exact to PyTorch.

The operations are plain functions on numpy arrays (H x W or H x W x C)::

    from convcli import filter2d, pool2d, conv_transpose2d, parse_kernel

Names are imported lazily so that ``import convcli`` (and ``convcli shape``)
does not pay for numpy. ``__version__`` too is read on first use, from the installed
package's metadata (pyproject.toml is the one place the version is written).
"""

_EXPORTS = {
    "filter2d": "engine.filtering",
    "pool2d": "engine.pooling",
    "conv_transpose2d": "engine.transposed",
    "pad2d": "engine.padding",
    "parse_kernel": "engine.kernels",
    "gaussian_kernel": "engine.kernels",
    "box_kernel": "engine.kernels",
    "bilinear_kernel": "engine.kernels",
    "nearest_kernel": "engine.kernels",
    "load_image": "io.images",
    "ConvcliError": "errors",
    "conv_output_size": "geometry.sizes",
    "pool_output_size": "geometry.sizes",
    "tconv_output_size": "geometry.sizes",
    "same_padding": "geometry.sizes",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("convcli")
        except PackageNotFoundError:  # run from a source tree that was never installed
            value = "0+unknown"
        globals()["__version__"] = value  # asked once
        return value
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'convcli' has no attribute {name!r}")


def __dir__():
    return __all__
