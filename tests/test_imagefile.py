"""convcli.io.images: loading (depths, alpha, EXIF, .npy), depth choice, value maps, atomic writes.

Expected pixels come from the fixtures' stored arrays and from Pillow/numpy directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convcli.errors import ConvcliError
from convcli.io.images import (
    atomic_write,
    choose_depth,
    load_image,
    map_values,
    output_format,
    parse_bytes,
    read_size,
    write_atomic,
)

LUMA = np.array([0.299, 0.587, 0.114])


# ------------------------------------------------------------------ loading


def test_rgb_png(rgb_png):
    loaded = load_image(rgb_png.path)
    assert loaded.depth == "8" and loaded.alpha is None
    assert loaded.size == (10, 13) and loaded.channels == 3
    np.testing.assert_array_equal(np.asarray(loaded.raw), rgb_png.pixels)
    assert loaded.data.dtype == np.float32
    np.testing.assert_allclose(loaded.data, rgb_png.pixels / 255.0, atol=1e-7)


def test_rgba_png_splits_alpha(rgba_png):
    loaded = load_image(rgba_png.path)
    assert loaded.channels == 3 and loaded.data.shape == (9, 12, 3)
    np.testing.assert_array_equal(np.asarray(loaded.raw), rgba_png.pixels[:, :, :3])
    np.testing.assert_array_equal(np.asarray(loaded.alpha), rgba_png.pixels[:, :, 3])
    np.testing.assert_allclose(loaded.alpha_float(), rgba_png.pixels[:, :, 3] / 255.0, atol=1e-7)


def test_16bit_png(gray16_png):
    loaded = load_image(gray16_png.path)
    assert loaded.depth == "16" and loaded.channels == 1 and loaded.alpha is None
    raw = np.asarray(loaded.raw)
    assert raw.shape == (8, 11, 1) and raw.dtype == np.uint16
    np.testing.assert_array_equal(raw[:, :, 0], gray16_png.pixels)
    np.testing.assert_allclose(loaded.data[:, :, 0], gray16_png.pixels / 65535.0, atol=1e-7)
    assert loaded.data.max() == 1.0 and loaded.data.min() == 0.0


def test_l_png(gray_png):
    loaded = load_image(gray_png.path)
    assert loaded.depth == "8" and loaded.channels == 1
    np.testing.assert_allclose(loaded.data[:, :, 0], gray_png.pixels / 255.0, atol=1e-7)


def test_la_png_alpha(tmp_path):
    la = np.dstack([np.full((4, 5), 200, np.uint8), np.arange(20, dtype=np.uint8).reshape(4, 5) * 12])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    assert loaded.channels == 1
    np.testing.assert_array_equal(np.asarray(loaded.alpha), la[:, :, 1])


def test_palette_with_transparency_becomes_rgba(tmp_path):
    image = Image.new("P", (4, 3))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.channels == 3 and loaded.alpha is not None
    assert np.asarray(loaded.alpha)[1, 1] == 255 and np.asarray(loaded.alpha)[0, 0] == 0
    np.testing.assert_array_equal(np.asarray(loaded.raw)[1, 1], [0, 255, 0])


def test_one_bit_image(tmp_path):
    bits = np.zeros((3, 8), dtype=bool)
    bits[1, 2:5] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    loaded = load_image(tmp_path / "b.png")
    np.testing.assert_allclose(loaded.data[:, :, 0], bits.astype(float), atol=0)


def test_exif_orientation_is_applied(exif_jpeg):
    loaded = load_image(exif_jpeg.path)
    # stored 16 wide x 8 high; orientation 6 shows it rotated 90 degrees clockwise: 8 wide x 16 high
    assert loaded.size == (16, 8)
    np.testing.assert_array_equal(np.asarray(loaded.raw), np.rot90(exif_jpeg.pixels, k=-1))
    # the left half (red) of the stored image ends up on top
    assert loaded.data[0, 0, 0] > 0.9 and loaded.data[-1, 0, 2] > 0.9


def test_exif_read_size_is_the_stored_header(exif_jpeg):
    # read_size answers from the header (used by --dry-run), before any EXIF rotation
    assert read_size(exif_jpeg.path) in ((8, 16), (16, 8))


def test_gray_is_luma(rgb_png):
    loaded = load_image(rgb_png.path, gray=True)
    assert loaded.channels == 1
    np.testing.assert_allclose(loaded.data[:, :, 0], (rgb_png.pixels / 255.0) @ LUMA, atol=1e-6)


def test_gray_on_one_channel_is_unchanged(gray_png):
    loaded = load_image(gray_png.path, gray=True)
    np.testing.assert_allclose(loaded.data[:, :, 0], gray_png.pixels / 255.0, atol=1e-7)


def test_float_npy(float_npy, float2d_npy):
    loaded = load_image(float_npy.path)
    assert loaded.depth == "float" and loaded.alpha is None
    np.testing.assert_array_equal(loaded.data, float_npy.pixels)
    loaded = load_image(float2d_npy.path)
    assert loaded.data.shape == (7, 10, 1)
    np.testing.assert_array_equal(loaded.data[:, :, 0], float2d_npy.pixels)


def test_integer_npy_is_taken_as_it_is(tmp_path):
    np.save(tmp_path / "i.npy", np.array([[1, 200], [3, 40000]], dtype=np.int32))
    np.testing.assert_array_equal(load_image(tmp_path / "i.npy").data[:, :, 0], [[1, 200], [3, 40000]])


def test_float_tiff(tmp_path):
    x = np.array([[-1.5, 2.25], [1e6, 0.0]], dtype=np.float32)
    Image.fromarray(x, "F").save(tmp_path / "f.tif")
    loaded = load_image(tmp_path / "f.tif")
    assert loaded.depth == "float"
    np.testing.assert_array_equal(loaded.data[:, :, 0], x)


@pytest.mark.parametrize(
    "array, mentions",
    [
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
        (np.zeros((2, 2, 2, 2)), "shape"),
        (np.zeros(5), "shape"),
        (np.zeros((0, 3)), "empty"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_npy(tmp_path, array, mentions):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ConvcliError, match=mentions) as info:
        load_image(tmp_path / "bad.npy")
    assert "bad.npy" in str(info.value)


def test_pickled_npy_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConvcliError, match=r"obj\.npy"):
        load_image(tmp_path / "obj.npy")


@pytest.mark.parametrize(
    "make, mentions",
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: (d / "folder").mkdir() or d / "folder", "folder"),
        (lambda d: (d / "text.png").write_text("hello") and d / "text.png", "not an image"),
        (lambda d: (d / "junk.npy").write_bytes(b"\x93NUMPY junk") and d / "junk.npy", "junk.npy"),
    ],
)
def test_unreadable_inputs(tmp_path, make, mentions):
    path = make(tmp_path)
    with pytest.raises(ConvcliError, match=mentions) as info:
        load_image(path)
    assert Path(path).name in str(info.value)


def test_max_pixels_is_checked_before_decoding(rgb_png):
    with pytest.raises(ConvcliError, match="--max-pixels"):
        load_image(rgb_png.path, max_pixels=129)  # 13 x 10 = 130
    assert load_image(rgb_png.path, max_pixels=130).size == (10, 13)


def test_before_decode_gets_height_width_channels(rgb_png, rgba_png, float_npy):
    seen = []
    load_image(rgb_png.path, before_decode=lambda *a: seen.append(a))
    load_image(rgba_png.path, before_decode=lambda *a: seen.append(a))
    load_image(float_npy.path, before_decode=lambda *a: seen.append(a))
    load_image(rgb_png.path, gray=True, before_decode=lambda *a: seen.append(a))
    assert seen == [(10, 13, 3), (9, 12, 3), (9, 11, 2), (10, 13, 1)]


def test_read_size(rgb_png, float_npy):
    assert read_size(rgb_png.path) == (10, 13)
    assert read_size(float_npy.path) == (9, 11)


# ----------------------------------------------------------------- output


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.png", "PNG"),
        ("a.PNG", "PNG"),
        ("a.tif", "TIFF"),
        ("a.tiff", "TIFF"),
        ("a.jpg", "JPEG"),
        ("a.jpeg", "JPEG"),
        ("a.bmp", "BMP"),
        ("a.webp", "WEBP"),
        ("a.npy", "NPY"),
    ],
)
def test_output_formats(name, fmt):
    assert output_format(name)[0] == fmt


@pytest.mark.parametrize("name", ["a.gif", "a.xyz", "a", "a.png.bak"])
def test_unknown_output_extension(name):
    with pytest.raises(ConvcliError, match="unknown extension"):
        output_format(name)


@pytest.mark.parametrize(
    "path, requested, source, channels, expected",
    [
        ("o.png", None, "8", 3, "8"),
        ("o.png", None, "16", 1, "16"),
        ("o.png", None, "float", 1, "8"),
        ("o.tif", None, "float", 1, "float"),
        ("o.tif", None, "16", 1, "16"),
        ("o.jpg", None, "16", 1, "8"),
        ("o.npy", None, "8", 3, "float"),
        ("o.png", "16", "8", 1, "16"),
        ("o.tif", "float", "8", 1, "float"),
        ("o.npy", "float", "8", 4, "float"),
    ],
)
def test_choose_depth(path, requested, source, channels, expected):
    assert choose_depth(path, requested, source, channels) == expected


@pytest.mark.parametrize(
    "path, requested, channels",
    [
        ("o.png", "16", 3),
        ("o.png", "float", 1),
        ("o.jpg", "16", 1),
        ("o.npy", "8", 1),
        ("o.tif", "float", 3),
        ("o.png", "12", 1),
    ],
)
def test_choose_depth_refuses(path, requested, channels):
    with pytest.raises(ConvcliError, match="depth"):
        choose_depth(path, requested, "8", channels)


def test_map_values_documented():
    data = np.array([-0.5, -0.2, 0.0, 0.3, 1.0, 1.7], dtype=np.float32)
    np.testing.assert_allclose(map_values(data, "clip"), [0, 0, 0, 0.3, 1, 1], atol=1e-7)
    np.testing.assert_allclose(map_values(data, "abs"), [0.5, 0.2, 0, 0.3, 1, 1], atol=1e-7)
    np.testing.assert_allclose(map_values(data, "offset"), [0, 0.3, 0.5, 0.8, 1, 1], atol=1e-7)
    np.testing.assert_allclose(map_values(data, "normalize"), (data + 0.5) / 2.2, atol=1e-7)
    np.testing.assert_array_equal(map_values(np.full(3, 0.4, np.float32), "normalize"), [0, 0, 0])
    with pytest.raises(ConvcliError):
        map_values(data, "log")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("512M", 512 * 2**20),
        ("4G", 4 * 2**30),
        ("1.5GiB", int(1.5 * 2**30)),
        ("1000000", 1000000),
        ("2k", 2048),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "-1G", "4X"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ConvcliError, match="--max-memory"):
        parse_bytes(text)


# ----------------------------------------------------------------- atomic


def test_atomic_write_uses_a_hidden_temp_file_in_the_same_folder(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    seen = {}

    def write(handle):
        handle.write(b"new")
        seen["files"] = sorted(os.listdir(tmp_path))
        seen["target"] = target.read_bytes()

    atomic_write(target, write)
    temp = [f for f in seen["files"] if f != "out.png"]
    assert len(temp) == 1 and temp[0].startswith(".out.png.") and temp[0].endswith(".tmp")
    assert seen["target"] == b"old"  # the target is replaced only at the end
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.png"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def write(handle):
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.png"]


def test_atomic_write_oserror_becomes_one_line_error(tmp_path):
    def write(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(ConvcliError, match="cannot be written") as info:
        atomic_write(tmp_path / "o.npy", write)
    assert "o.npy" in str(info.value) and "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_write_atomic_missing_folder(tmp_path):
    with pytest.raises(ConvcliError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "o.npy", np.zeros((2, 2), np.float32))
    assert os.listdir(tmp_path) == []


def test_written_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "o.npy", np.zeros((2, 2), np.float32))
    finally:
        os.umask(old)
    assert (tmp_path / "o.npy").stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), np.zeros((2, 2)))


def test_default_depth_falls_back_to_8_bit_when_the_format_cannot_hold_the_source():
    from convcli.io.images import choose_depth

    assert choose_depth("out.tif", None, "float", 1) == "float"
    assert choose_depth("out.tif", None, "float", 3) == "8"  # 3-channel float TIFF is not written
    assert choose_depth("out.png", None, "16", 1) == "16"
    assert choose_depth("out.png", None, "16", 3) == "8"
    assert choose_depth("out.npy", None, "8", 3) == "float"
    with pytest.raises(ConvcliError, match="32-bit float TIFF with one channel only"):
        choose_depth("out.tif", "float", "8", 3)
