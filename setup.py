"""The compiled parts of convcli; everything else is declared in pyproject.toml.

Two plain CPython extensions (the buffer protocol, no numpy headers), built at install time:
convcli/engine/_native.c, the engine's correlation loops, and convcli/io/_pngrows.c, the row
unfiltering of the streaming PNG decoder.  optional=True: where no C compiler is at hand the
install still succeeds, the engine runs its numpy paths and Pillow decodes every PNG whole
(tests/test_native.py and tests/test_pngread.py fail then, unless CONVCLI_NATIVE=0 says why).
No -march: the wheel must run on any x86-64 or aarch64 (_native.c picks an AVX2 clone at load
time itself).  -ffp-contract=off: no fused multiply-add, so each product and each sum is
rounded as numpy rounds them, on every platform.
"""

from setuptools import Extension, setup

ext_modules = [
    Extension(
        "convcli.engine._native",
        ["convcli/engine/_native.c"],
        optional=True,
        extra_compile_args=["-O3", "-ffp-contract=off"],
    ),
    Extension("convcli.io._pngrows", ["convcli/io/_pngrows.c"], optional=True, extra_compile_args=["-O3"]),
]

setup(ext_modules=ext_modules)
