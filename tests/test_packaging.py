"""What the package declares: one version, the license, the runtime dependencies, the packages."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import convcli

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_names(requirements: list[str]) -> set[str]:
    """'dask[array]>=2024.8' -> 'dask'."""
    names = set()
    for requirement in requirements:
        name = requirement
        for stop in "[<>=!~;( ":
            name = name.split(stop)[0]
        names.add(name.strip().lower())
    return names


def test_version_comes_from_the_package_metadata():
    assert convcli.__version__ == importlib.metadata.version("convcli")
    assert "__version__" in dir(convcli)


def test_installed_metadata_is_the_pyproject_version():
    declared = PYPROJECT["project"]["version"]
    assert importlib.metadata.version("convcli") == declared, (
        "the installed convcli is stale: run pip install -e . (or pip install .) again"
    )


def test_version_falls_back_without_metadata():
    code = (
        "import importlib.metadata as m\n"
        "def missing(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import convcli\n"
        "print(convcli.__version__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "0+unknown"


def test_license_file_is_declared_and_present():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the convcli developers" in text
    # a PEP 639 license expression needs setuptools 77 or later to build
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]


def test_scipy_is_a_test_dependency_only():
    assert "scipy" not in _requirement_names(PYPROJECT["project"]["dependencies"])
    assert "scipy" in _requirement_names(PYPROJECT["project"]["optional-dependencies"]["test"])


def test_import_convcli_loads_no_numpy():
    code = (
        "import sys, convcli\n"
        "convcli.__version__\n"
        "print(sorted(m for m in ('numpy', 'PIL', 'scipy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_every_package_is_listed_for_the_wheel():
    """[tool.setuptools] packages names every folder under convcli/ with an __init__.py."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "convcli").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert listed - {"convcli.presets"} == on_disk
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["convcli.presets"] == "presets"
    assert any((ROOT / "presets").glob("*.toml"))


def test_console_script_points_at_the_entry_module():
    assert PYPROJECT["project"]["scripts"] == {"convcli": "convcli.cli.entry:main"}
    assert (ROOT / "convcli" / "cli" / "entry.py").is_file()


@pytest.mark.parametrize("module", ["convcli.engine._native", "convcli.io._pngrows"])
def test_every_compiled_extension_is_built_where_the_tests_import_convcli(module):
    """setup.py builds them with optional=True, so pip succeeds without a compiler; the tests do
    not: a missing extension would leave its tests skipped and its fallback alone checked.  With
    CONVCLI_NATIVE=0 the fallbacks are meant (a machine with no C compiler)."""
    if os.environ.get("CONVCLI_NATIVE") == "0":
        pytest.skip("CONVCLI_NATIVE=0: the pure-Python fallbacks are meant")
    importlib.import_module(module)  # ImportError: rebuild with pip install -e '.[test]'


def test_setup_py_lists_every_c_source():
    sources = {str(path.relative_to(ROOT)) for path in (ROOT / "convcli").rglob("*.c")}
    listed = set(re.findall(r'"(convcli/[\w/]+\.c)"', (ROOT / "setup.py").read_text(encoding="utf-8")))
    assert sources == listed == {"convcli/engine/_native.c", "convcli/io/_pngrows.c"}
