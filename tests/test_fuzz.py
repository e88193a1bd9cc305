"""Property-based fuzzing of the parsers and the image loader.

No input may raise anything but ConvcliError. CI runs a bounded number of
examples (seconds); for a long local run:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
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


# ------------------------------------------------------- whole command lines
#
# Hypothesis writes argument lists for filter, pool, upsample and shape from the real option
# names with hostile values (huge, negative, malformed numbers, odd strings, inputs named as
# outputs) on tiny generated files, and runs them through the CLI.  Whatever it writes, convcli
# exits 0, 1 or 2, never prints a traceback, says what went wrong in exactly one line
# `convcli: error: ...` (a batch adds its summary), and leaves no temporary file.  Every run is
# held to --max-memory 256M, so that no example computes (or allocates) for long.

CLI_EXAMPLES = {"ci": 40, "long": 5_000}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 40)
BIG = [str(2**31), str(10**20), "9" * 400, str(-(10**20))]
NUMBERS = (
    st.integers(-3, 40).map(str)
    | st.sampled_from(BIG + ["0", "1e400", "nan", "inf", "-0", "1.5", " 2 ", "+3", "1_0", "٣", "0x10", ""])
    | st.text(alphabet="0123456789xX×-+. e,", max_size=8)
)
PAIRS = NUMBERS | st.tuples(NUMBERS, NUMBERS).map("x".join)
ODD = st.text(
    alphabet=st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)), max_size=12
) | st.sampled_from(["-", "--", "-h", "\n", "\udcff.png", "{}", "%s", "é", " "])
# shape echoes a layer spec as typed in its errors, control characters included (a newline
# would split the line): left to the shape code, so shape's layers get printable text only.
PRINTABLE = st.text(
    alphabet=st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
    max_size=12,
)
KERNELS = (
    st.sampled_from(
        [
            "gaussian",
            "sobel-vertical",
            "box:size=3x2",
            "gaussian:size=5,sigma=0",
            "laplacian",
            "nearest",
            "bilinear",
            "1,0;0,1",
            "1 2 3",
            "k.npy",
            "k.txt",
            "m.csv",
            "missing.npy",
            "mine",
            "bad",
            "tiny.png",
            "presets",
            "gaussian:size=" + BIG[1],
            "gaussian:sigma=1e400",
            "1e400",
            "nan",
            "box:nope=1",
        ]
    )
    | st.tuples(st.sampled_from(["gaussian:size=", "box:size=", "nearest:factor="]), PAIRS).map("".join)
    | ODD
)
OUTPUTS = st.sampled_from(
    [
        "out.png",
        "out.npy",
        "out.tif",
        "out.jpg",
        "out.csv",
        "-",
        "",
        "folder/",
        "nodir/x.png",
        "x" * 246 + ".png",
        "y" * 300 + ".png",
        "tiny.png",
        "tiny.npy",
        "k.npy",
        "m.csv",
        ".png",
        "out",
        "a b.png",
        "-x.png",
    ]
) | ODD.map(lambda s: s + ".png")
TEMPLATES = st.text(alphabet="{}stemxnaporkl:<>^_.0123456789!r[]/", max_size=20).filter(
    lambda t: not t.startswith("/") and ".." not in t
) | st.sampled_from(["{stem}-{op}.png", "{stem:>99999999}.png", "{stem.x}", "{0}", "{}", "{parent}/{name}"])
MATRICES = st.sampled_from(
    ["1 2; 3 4", "m.csv", "k.npy", "k.txt", "1", "", "1e400", "3e38 3e38; 3e38 3e38"]
) | st.text(alphabet="0123456789 ;,.-e", max_size=20)
SHARED = {
    "--gray": None,
    "--map": st.sampled_from(["auto", "clip", "abs", "normalize", "offset"]) | ODD,
    "--depth": st.sampled_from(["8", "16", "float"]) | ODD,
    "-o": OUTPUTS,
    "--output-template": TEMPLATES,
    "--format": st.sampled_from(["png", "npy", "tif", "jpg"]) | ODD,
    "--compress-level": NUMBERS,
    "--json": None,
    "-q": None,
    "-r": None,
    "--overwrite": None,
    "-j": NUMBERS,
    "--fail-fast": None,
    "--dry-run": None,
    "--max-pixels": NUMBERS,
    # bounded or refused: a legal huge limit would let a legal huge output be computed
    "--max-memory": st.sampled_from(
        ["1", "1M", "64M", "256M", "0", "-1", "1e999", "nan", "4Q", "", "1.5.5M"]
    ),
    "--chunk": PAIRS,
    "--matrix": MATRICES,
    "--explain": None,
    "--at": st.tuples(NUMBERS, NUMBERS).map(",".join) | ODD,
}
COMMAND_OPTIONS = {
    "filter": {
        "-k": KERNELS,
        "--mode": st.sampled_from(["correlation", "convolution"]) | ODD,
        "--presets": st.sampled_from(["presets", "nope", "tiny.png"]) | ODD,
        "-s": PAIRS,
        "-p": PAIRS | st.sampled_from(["same", "valid"]),
        "-d": PAIRS,
        "--pad-mode": st.sampled_from(["zeros", "reflect", "replicate", "circular"]) | ODD,
    },
    "pool": {
        "--op": st.sampled_from(["max", "mean", "min"]) | ODD,
        "-k": PAIRS,
        "-s": PAIRS,
        "-p": PAIRS,
        "-d": PAIRS,
        "--ceil-mode": None,
        "--count-include-pad": None,
        "--no-count-include-pad": None,
    },
    "upsample": {
        "-k": KERNELS,
        "--mode": st.sampled_from(["correlation", "convolution"]) | ODD,
        "--presets": st.sampled_from(["presets", "nope"]) | ODD,
        "-s": PAIRS,
        "-p": PAIRS,
        "--output-padding": PAIRS,
        "-d": PAIRS,
    },
}
INPUTS = st.sampled_from(["tiny.png", "tiny.npy", "missing.png", "-", "k.txt", "presets"]) | ODD
SHAPE_OPTIONS = {
    "-k": PAIRS,
    "-s": PAIRS,
    "-p": PAIRS | st.just("same"),
    "-d": PAIRS,
    "--json": None,
    "--explain": None,
}
LAYER = st.tuples(
    st.sampled_from(["conv", "pool", "tconv", "nope", ""]),
    st.lists(st.tuples(st.sampled_from(["k", "s", "p", "d", "op", "ceil", "x"]), PAIRS), max_size=4),
).map(lambda t: t[0] + ":" + ",".join(f"{k}={v}" for k, v in t[1]))


def _tiny_files() -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    blobs = {}
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save(buffer, format="PNG")
    blobs["tiny.png"] = buffer.getvalue()
    for name, array in (("tiny.npy", rng.random((5, 6, 2), dtype=np.float32)), ("k.npy", np.ones((2, 2)))):
        buffer = io.BytesIO()
        np.save(buffer, array)
        blobs[name] = buffer.getvalue()
    blobs["k.txt"] = b"1 0 -1\n2 0 -2\n1 0 -1\n"
    blobs["m.csv"] = b"1,2,3\n4,5,6\n"
    blobs["presets/mine.toml"] = b'description = "mine"\nmatrix = [[0, 1], [1, 0]]\n'
    blobs["presets/bad.toml"] = b"matrix = [[1, 2], [3]]\ngenerator = 'box'\n"
    return blobs


TINY_FILES = _tiny_files()


@st.composite
def command_lines(draw) -> list[str]:
    """An argument list for filter, pool, upsample or shape, from the real option names."""
    command = draw(st.sampled_from(["filter", "pool", "upsample", "shape"]), label="command")
    if command == "shape":
        argv = [command, draw(PAIRS | st.sampled_from(["tiny.png", "224"]) | ODD, label="size")]
        argv += draw(st.lists(LAYER | PRINTABLE, max_size=3), label="layers")
        options = SHAPE_OPTIONS
    else:
        # At most 256 MiB of work, unless the fuzzer's own --max-memory (later, so it wins) says less.
        argv = [command, "--max-memory", "256M", *draw(st.lists(INPUTS, max_size=2), label="inputs")]
        options = COMMAND_OPTIONS[command] | SHARED
    names = draw(st.lists(st.sampled_from(sorted(options)), max_size=6), label="options")
    for name in names:
        argv.append(name)
        if options[name] is not None:
            argv.append(draw(options[name], label=name))
    return argv


def _shape_fast(argv: list[str]):
    """``convcli shape`` as the console script runs it: the fast path, else Typer."""
    from contextlib import redirect_stderr, redirect_stdout

    from convcli.cli.shape_fast import fast_main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = fast_main(argv[1:])
    return code, out.getvalue(), err.getvalue()


def _strict_json(line: str):
    def refuse(name):
        raise ValueError(f"not standard JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def _check(argv, code, stdout, stderr, exception, folder: Path) -> None:
    where = (argv, code, stdout[-500:], stderr[-2000:], repr(exception))
    assert exception is None or isinstance(exception, SystemExit), where
    assert code in (0, 1, 2), where
    assert "Traceback" not in stdout + stderr, where
    records = [_strict_json(line) for line in stdout.splitlines() if line.startswith(("{", "["))]
    if code:
        lines = stderr.rstrip("\n").split("\n")  # lines as a reader of the stream splits them
        errors = [line for line in lines if line.startswith("convcli: error: ")]
        others = [line for line in lines if not line.startswith("convcli: error: ")]
        if not errors:  # a batch under --json: its failures are JSON records
            assert code == 1 and "--json" in argv and any("error" in r for r in records), where
        elif others or len(errors) > 1:  # a batch: its images' errors, and its summary (unless -q)
            assert len(others) <= 1 and all(o.startswith(("done ", "dry run: ")) for o in others), where
    left = [str(p) for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert left == [], where


@settings(max_examples=CLI_EXAMPLES)
@given(command_lines())
# Hostile lines once found by hand (issue #14), always tried first.
@example(["filter", "tiny.png", "-o", "x" * 246 + ".png"])  # a legal name, 14 bytes from the limit
@example(["filter", "tiny.png", "--output-template", "{stem.x}.png"])
@example(["filter", "tiny.png", "-k", "k.npy", "-o", "k.npy", "--overwrite"])  # the kernel as output
@example(["filter", "--matrix", "3e38 3e38; 3e38 3e38", "-k", "1 1; 1 1", "--json"])  # inf in JSON
@example(["pool", "tiny.png", "missing.png", "-q", "--json", "-o", "out"])  # a failure under -q --json
@example(["pool", "tiny.png", "-o", "\udcff.png"])  # a name from bytes that are no UTF-8, reported
def test_command_lines_fail_cleanly(argv):
    from typer.testing import CliRunner

    from convcli.cli.app import app

    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for relative, blob in TINY_FILES.items():
            (folder / relative).parent.mkdir(exist_ok=True)
            (folder / relative).write_bytes(blob)
        kernel_before = (folder / "k.npy").read_bytes()
        os.chdir(folder)
        try:
            if argv[0] == "shape":
                code, stdout, stderr = _shape_fast(argv)
                if code is not None:
                    _check(argv, code, stdout, stderr, None, folder)
            result = CliRunner().invoke(app, argv, env={"CONVCLI_PRESETS": None})
            _check(argv, result.exit_code, result.stdout, result.stderr, result.exception, folder)
            assert (folder / "k.npy").read_bytes() == kernel_before, argv  # an input, never an output
        finally:
            os.chdir(previous)
