"""The compiled part of convcli; everything else is declared in pyproject.toml.

convcli/engine/_native.c is a plain CPython extension (the buffer protocol, no numpy headers),
built at install time.  optional=True: where no C compiler is at hand the install still succeeds
and the engine runs its numpy paths (tests/test_native.py fails then, unless CONVCLI_NATIVE=0).
No -march: the wheel must run on any x86-64 or aarch64 (the C file picks an AVX2 clone at load
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
]

setup(ext_modules=ext_modules)
