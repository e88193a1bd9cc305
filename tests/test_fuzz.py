"""Property-based fuzzing of the parsers and the image loader.

No input may raise anything but ConvcliError. CI runs a bounded number of
examples (seconds); for a long local run:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convcli.engine.kernels import parse_kernel
from convcli.errors import ConvcliError
from convcli.geometry.sizes import parse_pair
from convcli.io.images import load_image

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MATRIX_ALPHABET = "0123456789-+.,; eEinfa:=xX/\n\t#[]"


@given(st.text(alphabet=MATRIX_ALPHABET, max_size=40) | st.text(max_size=30))
def test_kernel_parser_raises_only_convcli_errors(spec):
    try:
        kernel = parse_kernel(spec)
    except ConvcliError:
        return
    matrix = kernel.matrix
    assert matrix.ndim == 2 and matrix.size > 0 and np.isfinite(matrix).all()


@given(
    st.lists(st.lists(st.integers(-9, 9), min_size=1, max_size=5), min_size=1, max_size=5),
    st.sampled_from([",", " ", ", "]),
    st.sampled_from([";", "\n", "; "]),
)
def test_inline_matrix_round_trip(rows, value_sep, row_sep):
    spec = row_sep.join(value_sep.join(str(v) for v in row) for row in rows)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        with pytest.raises(ConvcliError, match="different lengths"):
            parse_kernel(spec)
    else:
        np.testing.assert_array_equal(parse_kernel(spec).matrix, np.array(rows, dtype=np.float32))


@given(st.text(alphabet="0123456789xX× -+.ab", max_size=12) | st.text(max_size=12))
def test_pair_parser_raises_only_convcli_errors(text):
    try:
        height, width = parse_pair(text, "--stride", minimum=1)
    except ConvcliError:
        return
    assert height >= 1 and width >= 1


@given(st.integers(1, 10_000), st.integers(1, 10_000))
def test_pair_parser_is_width_first(width, height):
    assert parse_pair(f"{width}x{height}", "--size") == (height, width)


def _sample_bytes() -> list[bytes]:
    samples = []
    folder = Path(__file__).resolve().parent.parent / "sample_images"
    for name in ("badge.png", "gradient16.png"):
        if (folder / name).exists():
            samples.append((folder / name).read_bytes())
    rng = np.random.default_rng(0)
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("TIFF", "L"), ("BMP", "RGB")):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).convert(mode).save(
            buffer, format=fmt
        )
        samples.append(buffer.getvalue())
    buffer = io.BytesIO()
    np.save(buffer, rng.random((5, 6), dtype=np.float32))
    samples.append(buffer.getvalue())
    return samples


SAMPLES = _sample_bytes()


@given(st.sampled_from(range(len(SAMPLES))), st.data())
def test_loader_on_mutated_bytes(tmp_path, index, data):
    blob = bytearray(SAMPLES[index])
    for _ in range(data.draw(st.integers(1, 8), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]), label="kind")
        position = data.draw(st.integers(0, max(len(blob) - 1, 0)), label="position")
        if kind == "flip" and blob:
            blob[position] ^= data.draw(st.integers(1, 255), label="mask")
        elif kind == "cut":
            del blob[position:]
        else:
            blob[position:position] = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
    suffix = ".npy" if SAMPLES[index].startswith(b"\x93NUMPY") else ".png"
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(bytes(blob))
    try:
        loaded = load_image(path, max_pixels=4_000_000)
    except ConvcliError:
        return
    assert loaded.data.ndim == 3 and loaded.data.dtype == np.float32
