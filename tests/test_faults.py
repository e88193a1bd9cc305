"""Bad input and faults through the real command line: one clear line, the right exit
code, no traceback, and no output file, partial or temporary."""

from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONVCLI = [sys.executable, "-m", "convcli"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(args, cwd, **kwargs):
    return subprocess.run(
        CONVCLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, **kwargs
    )


def assert_clean_error(result, *, code=2, mentions=()):
    """Exit code, exactly one stderr line naming the culprit, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("convcli: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for word in mentions:
        assert word in lines[0], (word, lines[0])


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "good.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge 8-bit grayscale image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


# ------------------------------------------------------------- bad image files


@pytest.mark.parametrize(
    "name, make",
    [
        ("truncated.png", lambda good: good.read_bytes()[: len(good.read_bytes()) // 2]),
        ("zero.png", lambda good: b""),
        ("text.png", lambda good: b"this is not an image\n"),
    ],
)
def test_bad_image_files(tmp_path, png, name, make):
    (tmp_path / name).write_bytes(make(png))
    before = files_in(tmp_path)
    result = run(["filter", name, "-o", "out.png"], tmp_path)
    assert_clean_error(result, mentions=[name])
    assert files_in(tmp_path) == before


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="JPEG"
    )
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:600])
    result = run(["filter", "cut.jpg", "-o", "out.png"], tmp_path)
    assert_clean_error(result, mentions=["cut.jpg"])
    assert not (tmp_path / "out.png").exists()


def test_directory_as_kernel_file_and_output(tmp_path, png):
    (tmp_path / "k.npy").mkdir()
    assert_clean_error(run(["filter", png.name, "-k", "k.npy"], tmp_path), mentions=["k.npy", "folder"])
    (tmp_path / "out.png").mkdir()
    result = run(["filter", png.name, "-o", "out.png/"], tmp_path)  # a folder output is fine
    assert result.returncode == 0, result.stderr
    assert files_in(tmp_path / "out.png") == ["good-gaussian.png"]


@pytest.mark.skipif(IS_ROOT, reason="root reads every file whatever its permissions")
def test_unreadable_file(tmp_path, png):
    png.chmod(0)
    assert_clean_error(run(["filter", png.name], tmp_path), mentions=[png.name])


def test_decompression_bomb_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    result = run(["filter", "bomb.png", "-o", "out.png"], tmp_path)
    assert_clean_error(result, mentions=["bomb.png", "--max-pixels", "100000x100000"])
    smaller_limit = run(["filter", "bomb.png", "--max-pixels", "1000", "-o", "out.png"], tmp_path)
    assert_clean_error(smaller_limit, mentions=["1,000"])
    assert not (tmp_path / "out.png").exists()


def test_memory_limit_refused_up_front_with_estimate(tmp_path, png):
    result = run(["filter", png.name, "--max-memory", "10K", "-o", "out.png"], tmp_path)
    assert_clean_error(result, mentions=["MiB", "--max-memory"])
    assert not (tmp_path / "out.png").exists()
    assert_clean_error(run(["filter", png.name, "--max-memory", "lots"], tmp_path), mentions=["--max-memory"])


@pytest.mark.parametrize(
    "name, array",
    [
        ("object.npy", None),
        ("four_d.npy", np.zeros((2, 3, 4, 5), np.float32)),
        ("empty.npy", np.zeros((0, 4), np.float32)),
        ("nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]], np.float32)),
        ("inf.npy", np.array([[1.0, np.inf], [0.0, 1.0]], np.float32)),
        ("strings.npy", np.array([["a", "b"], ["c", "d"]])),
    ],
)
def test_bad_npy_inputs(tmp_path, name, array):
    path = tmp_path / name
    if array is None:  # an object array holds a pickle: it must never be loaded
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    else:
        np.save(path, array)
    result = run(["filter", name, "-k", "1", "-o", "out.npy"], tmp_path)
    assert_clean_error(result, mentions=[name])
    assert not (tmp_path / "out.npy").exists()


def test_pickle_in_npy_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.save(tmp_path / "evil.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    result = run(["filter", "evil.npy", "-o", "out.npy"], tmp_path)
    assert_clean_error(result, mentions=["evil.npy"])
    assert not marker.exists()
    kernel = run(["filter", "evil.npy", "-k", "evil.npy"], tmp_path)
    assert kernel.returncode == 2 and not marker.exists()


# ----------------------------------------------------------------- kernels


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ("", ["kernel"]),
        ("1,2;3", ["different lengths"]),
        ("1,x;3,4", ["'x' is not a number"]),
        ("1,nan;0,1", ["NaN"]),
        ("1,inf;0,1", ["NaN or infinite"]),
        ("gaussian:size=999", ["kernel"]),
        ("no-such-preset", ["unknown preset"]),
        ("../../etc/passwd", ["kernel"]),
        ("gaussian:sigma=0", ["sigma"]),
    ],
)
def test_bad_kernels(tmp_path, png, spec, mentions):
    result = run(["filter", png.name, "-k", spec, "-o", "out.png"], tmp_path)
    assert_clean_error(result, mentions=mentions)
    assert not (tmp_path / "out.png").exists()


def test_zero_by_n_kernel_file(tmp_path, png):
    np.save(tmp_path / "k.npy", np.zeros((0, 3), np.float32))
    assert_clean_error(run(["filter", png.name, "-k", "k.npy"], tmp_path), mentions=["empty"])


@pytest.mark.parametrize(
    "filename, text",
    [
        ("broken.toml", "matrix = [[1, 2], [3"),
        ("broken.json", '{"matrix": [[1, 2], [3, 4]'),
        ("neither.toml", 'description = "no matrix"'),
    ],
)
def test_invalid_user_preset_files(tmp_path, png, filename, text):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / filename).write_text(text)
    result = run(["filter", png.name, "-k", Path(filename).stem, "--presets", "presets"], tmp_path)
    assert_clean_error(result, mentions=[filename])


# -------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["-s", "0"], ["--stride"]),
        (["-s", "-1"], ["--stride"]),
        (["-p", "-1"], ["--padding"]),
        (["-d", "0"], ["--dilation"]),
        (["-s", "2xjunk"], ["--stride", "2xjunk"]),
        (["-s", "x2"], ["--stride"]),
        (["-p", "1x1x1"], ["--padding"]),
    ],
)
def test_bad_filter_parameters(tmp_path, png, args, mentions):
    assert_clean_error(run(["filter", png.name, *args, "-o", "o.png"], tmp_path), mentions=mentions)
    assert not (tmp_path / "o.png").exists()


def test_output_padding_not_below_stride(tmp_path, png):
    result = run(["upsample", png.name, "-s", "2", "--output-padding", "2", "-o", "o.png"], tmp_path)
    assert_clean_error(result, mentions=["--output-padding"])


# ------------------------------------------------------------------ outputs


def test_output_folder_missing(tmp_path, png):
    assert_clean_error(run(["filter", png.name, "-o", "nowhere/o.png"], tmp_path), mentions=["nowhere"])
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_output_folder_read_only(tmp_path, png):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert_clean_error(run(["filter", png.name, "-o", "ro/o.png"], tmp_path), mentions=["ro"])
        assert files_in(folder) == []
    finally:
        folder.chmod(0o755)


def test_output_equal_to_input_and_unknown_extension(tmp_path, png):
    before = png.read_bytes()
    assert_clean_error(run(["filter", png.name, "-o", png.name], tmp_path), mentions=[png.name])
    assert_clean_error(run(["filter", png.name, "-o", f"./{png.name}"], tmp_path), mentions=[png.name])
    assert png.read_bytes() == before
    assert_clean_error(run(["filter", png.name, "-o", "o.xyz"], tmp_path), mentions=["o.xyz", "extension"])
    assert files_in(tmp_path) == [png.name]


def test_disk_full_keeps_earlier_file_and_leaves_no_partial(tmp_path):
    big = np.random.default_rng(2).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png", compress_level=0)
    (tmp_path / "out.png").write_bytes(b"earlier result")

    def limit_file_size():  # as `ulimit -f 64`: any write past 64 KiB fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = run(
        ["filter", "big.png", "-k", "identity", "--compress-level", "0", "-o", "out.png"],
        tmp_path,
        preexec_fn=limit_file_size,
    )
    assert_clean_error(result, mentions=["out.png", "cannot be written"])
    assert (tmp_path / "out.png").read_bytes() == b"earlier result"
    assert files_in(tmp_path) == ["big.png", "out.png"]


def test_unicode_spaces_and_leading_dash(tmp_path, png):
    folder = tmp_path / "dossier d'été 画像"
    folder.mkdir()
    source = folder / "-canard à plumes.png"
    source.write_bytes(png.read_bytes())
    result = run(["filter", "-k", "box", "--", str(source.relative_to(tmp_path))], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (folder / "-canard à plumes-box.png").exists()
    assert "64x48 -> 62x46" in result.stdout


# ---------------------------------------------------------------- concurrency


def test_two_writers_same_folder_never_half_files(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / f"i{i}.png")
    (tmp_path / "out").mkdir()
    same = ["filter", "i0.png", "-k", "gaussian:size=9", "-o", "out/same.png"]
    procs = [
        subprocess.Popen(CONVCLI + same, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    procs += [
        subprocess.Popen(
            CONVCLI + ["filter", f"i{i}.png", "i1.png", "-o", f"out/d{i}", "-k", "box"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in (2, 3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    with Image.open(tmp_path / "out" / "same.png") as image:
        image.load()
        assert image.size == (392, 292)
    for folder in ("d2", "d3"):
        for path in (tmp_path / "out" / folder).iterdir():
            with Image.open(path) as image:
                image.load()
