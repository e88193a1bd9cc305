from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "convcli.io._pngrows", ["convcli/io/_pngrows.c"], optional=True, extra_compile_args=["-O3"]
        ),
    ]
)
