"""``convcli kernels`` and kernel presets (built-in, --presets DIR, $CONVCLI_PRESETS) via CliRunner.

Expected matrices come from the preset files themselves (read here with tomllib)
or from explicit constructions; never from convcli.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

ROOT = Path(__file__).resolve().parent.parent
PRESET_DIR = ROOT / "presets"
PRESET_FILES = sorted(p for p in PRESET_DIR.iterdir() if p.suffix in (".toml", ".json"))
PRESET_NAMES = sorted(p.stem for p in PRESET_FILES)


def read_preset(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)


MATRIX_PRESETS = [p.stem for p in PRESET_FILES if "matrix" in read_preset(p)]


def explicit_gaussian(size, sigma):
    centre = (size - 1) / 2
    g = np.array(
        [
            [math.exp(-((i - centre) ** 2 + (j - centre) ** 2) / (2 * sigma**2)) for j in range(size)]
            for i in range(size)
        ]
    )
    return g / g.sum()


def table_rows(text: str) -> list[list[float]]:
    """The numeric rows of a rich table (cells between box-drawing bars)."""
    rows = []
    for line in text.splitlines():
        if "│" not in line and "|" not in line:
            continue
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            continue
    return rows


def correlate_oracle(x, k, sides=(0, 0, 0, 0)):
    """scipy's valid cross-correlation of each channel, after zero padding (top, bottom, left, right)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return np.stack([correlate_oracle(x[:, :, c], k, sides) for c in range(x.shape[2])], axis=2)
    top, bottom, left, right = sides
    padded = np.pad(x, ((top, bottom), (left, right)))
    return scipy.signal.correlate2d(padded, np.asarray(k, dtype=np.float64), mode="valid")


def filtered(cli, npy, tmp_path, *args, env=None):
    out = tmp_path / "k.npy"
    cli.ok("filter", npy.path, *args, "-o", out, "-q", "--overwrite", env=env)
    return np.load(out)


# --------------------------------------------------------------- built-ins


def test_presets_folder_is_not_empty():
    assert len(PRESET_NAMES) >= 10
    assert "sobel-vertical" in PRESET_NAMES and "gaussian" in PRESET_NAMES


def test_kernels_lists_every_preset_file(cli):
    result = cli.ok("kernels")
    for name in PRESET_NAMES:
        assert re.search(rf"^{re.escape(name)}( \(|$)", result.stdout, re.MULTILINE), name


def test_kernels_json_lists_exactly_the_preset_files(cli):
    lines = cli.ok("kernels", "--json").stdout.splitlines()
    items = [json.loads(line) for line in lines]  # JSON Lines: one preset a line, as --help says
    assert len(lines) == len(PRESET_NAMES)
    assert sorted(item["name"] for item in items) == PRESET_NAMES
    for item in items:
        assert item["source"] == "preset"
        matrix = np.array(item["matrix"])
        assert item["size"] == {"width": matrix.shape[1], "height": matrix.shape[0]}
        assert item["description"] == read_preset(PRESET_DIR / f"{item['name']}.toml").get("description", "")


@pytest.mark.parametrize("name", MATRIX_PRESETS)
def test_matrix_presets_json_equal_their_files(cli, name):
    item = json.loads(cli.ok("kernels", "show", name, "--json").stdout)
    expected = read_preset(PRESET_DIR / f"{name}.toml")["matrix"]
    assert item["name"] == name
    np.testing.assert_array_equal(np.array(item["matrix"]), np.array(expected, dtype=float))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gaussian", explicit_gaussian(5, 1.0)),
        ("gaussian:size=7,sigma=1.5", explicit_gaussian(7, 1.5)),
        ("gaussian:size=3, sigma=0.8", explicit_gaussian(3, 0.8)),
        ("box", np.full((3, 3), 1 / 9)),
        ("box:size=4x2", np.full((2, 4), 1 / 8)),  # 4 wide, 2 high
        ("nearest", np.ones((2, 2))),
        ("nearest:factor=3", np.ones((3, 3))),
        ("bilinear", np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])),
        ("bilinear:factor=3", np.outer([1, 2, 3, 2, 1], [1, 2, 3, 2, 1]) / 9),
    ],
)
def test_generator_presets(cli, spec, expected):
    item = json.loads(cli.ok("kernels", "show", spec, "--json").stdout)
    np.testing.assert_allclose(np.array(item["matrix"]), expected, rtol=1e-6, atol=1e-7)
    assert item["size"] == {"width": expected.shape[1], "height": expected.shape[0]}


def test_kernels_show_prints_the_matrix_rows(cli):
    result = cli.ok("kernels", "show", "sobel-vertical")
    assert result.stdout.splitlines()[0] == "sobel-vertical"
    assert table_rows(result.stdout) == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    assert "Sobel, vertical edges" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("name", MATRIX_PRESETS)
def test_kernels_show_rows_equal_the_file(cli, name):
    rows = table_rows(cli.ok("kernels", "show", name).stdout)
    assert rows == [[float(v) for v in row] for row in read_preset(PRESET_DIR / f"{name}.toml")["matrix"]]


def test_kernels_show_with_params(cli):
    result = cli.ok("kernels", "show", "gaussian:size=3,sigma=1")
    assert result.stdout.splitlines()[0] == "gaussian (size=3, sigma=1)"
    rows = np.array(table_rows(result.stdout))
    np.testing.assert_allclose(rows, explicit_gaussian(3, 1.0), rtol=1e-3)  # printed to 4 digits


def test_kernels_show_inline_matrix(cli):
    result = cli.ok("kernels", "show", "1,2;3,4")
    assert table_rows(result.stdout) == [[1, 2], [3, 4]]
    item = json.loads(cli.ok("kernels", "show", "1 2 3; 4 5 6", "--json").stdout)
    assert item["source"] == "inline" and item["matrix"] == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ("nosuch", "nosuch"),
        ("../x", "../x"),
        ("../presets/sobel-vertical", "sobel-vertical"),
        ("sub\\x", "preset name"),
        ("gaussian:size=0", "size"),
        ("gaussian:sigma=abc", "sigma"),
        ("gaussian:size", "size"),
        ("sobel-vertical:factor=2", "factor"),
        ("1,2;3", "rows"),
    ],
)
def test_kernels_show_errors(cli, spec, mentions):
    cli.fail("kernels", "show", spec, mentions=mentions)


def test_filter_with_every_matrix_preset(cli, float2d_npy, tmp_path):
    for name in MATRIX_PRESETS:
        kernel = np.array(read_preset(PRESET_DIR / f"{name}.toml")["matrix"], dtype=float)
        y = filtered(cli, float2d_npy, tmp_path, "-k", name)
        expected = scipy.signal.correlate2d(float2d_npy.pixels.astype(float), kernel, mode="valid")
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5, err_msg=name)


# ------------------------------------------------------------ user presets


@pytest.fixture
def user_presets(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "diag.toml").write_text('description = "a diagonal"\nmatrix = [[0, 1], [-1, 0.5]]\n')
    (folder / "row.json").write_text(json.dumps({"description": "a row", "matrix": [[1, -2, 4]]}))
    (folder / "soft.toml").write_text('generator = "gaussian"\n[params]\nsize = 3\nsigma = 0.5\n')
    (folder / "notes.txt").write_text("not a preset")
    return folder


def test_filter_with_presets_option(cli, float_npy, tmp_path, user_presets):
    y = filtered(cli, float_npy, tmp_path, "-k", "diag", "--presets", user_presets)
    np.testing.assert_allclose(y, correlate_oracle(float_npy.pixels, [[0, 1], [-1, 0.5]]), atol=1e-5)
    y = filtered(cli, float_npy, tmp_path, "-k", "row", "--presets", user_presets)
    np.testing.assert_allclose(y, correlate_oracle(float_npy.pixels, [[1, -2, 4]]), atol=1e-5)
    y = filtered(cli, float_npy, tmp_path, "-k", "soft:sigma=2", "--presets", user_presets, "-p", "same")
    np.testing.assert_allclose(
        y, correlate_oracle(float_npy.pixels, explicit_gaussian(3, 2.0), sides=(1, 1, 1, 1)), atol=1e-5
    )
    # built-ins stay available next to the folder
    y = filtered(cli, float_npy, tmp_path, "-k", "laplacian", "--presets", user_presets)
    np.testing.assert_allclose(
        y, correlate_oracle(float_npy.pixels, [[0, 1, 0], [1, -4, 1], [0, 1, 0]]), atol=1e-5
    )


def test_user_preset_default_output_name(cli, float_npy, tmp_path, user_presets):
    cli.ok("filter", float_npy.path, "-k", "diag", "--presets", user_presets, "-q")
    assert (tmp_path / "x-diag.npy").is_file()


def test_filter_with_presets_from_environment(cli, float_npy, tmp_path, user_presets):
    env = {"CONVCLI_PRESETS": str(user_presets)}
    y = filtered(cli, float_npy, tmp_path, "-k", "diag", env=env)
    np.testing.assert_allclose(y, correlate_oracle(float_npy.pixels, [[0, 1], [-1, 0.5]]), atol=1e-5)
    y = filtered(cli, float_npy, tmp_path, "-k", "row", env=env)
    np.testing.assert_allclose(y, correlate_oracle(float_npy.pixels, [[1, -2, 4]]), atol=1e-5)
    # without the variable the preset is unknown
    cli.fail("filter", float_npy.path, "-k", "diag", "-o", tmp_path / "z.npy", mentions="diag")


def test_upsample_with_user_preset(cli, float2d_npy, tmp_path, user_presets):
    out = tmp_path / "u.npy"
    cli.ok("upsample", float2d_npy.path, "-k", "row", "-s", "3x1", "--presets", user_presets, "-o", out, "-q")
    x = float2d_npy.pixels.astype(float)
    expected = np.zeros((7, (10 - 1) * 3 + 3))
    for j in range(10):
        expected[:, 3 * j : 3 * j + 3] += np.outer(x[:, j], [1, -2, 4])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


def test_kernels_lists_user_presets(cli, user_presets):
    for result in (
        cli.ok("kernels", "--presets", user_presets),
        cli.ok("kernels", env={"CONVCLI_PRESETS": str(user_presets)}),
    ):
        for name in PRESET_NAMES + ["diag", "row", "soft"]:
            assert re.search(rf"^{re.escape(name)}( \(|$)", result.stdout, re.MULTILINE), name
        assert "notes" not in result.stdout
    items = [
        json.loads(line)
        for line in cli.ok("kernels", "--presets", user_presets, "--json").stdout.splitlines()
    ]
    assert sorted(i["name"] for i in items) == sorted(PRESET_NAMES + ["diag", "row", "soft"])
    by_name = {i["name"]: i for i in items}
    assert by_name["row"]["matrix"] == [[1, -2, 4]] and by_name["row"]["description"] == "a row"


def test_kernels_show_user_preset(cli, user_presets):
    result = cli.ok("kernels", "--presets", user_presets, "show", "diag")
    assert table_rows(result.stdout) == [[0, 1], [-1, 0.5]]
    result = cli.ok("kernels", "show", "row", env={"CONVCLI_PRESETS": str(user_presets)})
    assert table_rows(result.stdout) == [[1, -2, 4]]


def test_presets_option_overrides_environment_overrides_builtin(cli, float2d_npy, tmp_path):
    env_dir, opt_dir = tmp_path / "env", tmp_path / "opt"
    env_dir.mkdir()
    opt_dir.mkdir()
    (env_dir / "sobel-vertical.toml").write_text("matrix = [[2]]\n")
    (opt_dir / "sobel-vertical.json").write_text('{"matrix": [[3]]}')
    env = {"CONVCLI_PRESETS": str(env_dir)}
    x = float2d_npy.pixels
    np.testing.assert_allclose(
        filtered(cli, float2d_npy, tmp_path, "-k", "sobel-vertical", env=env), 2 * x, rtol=1e-6
    )
    np.testing.assert_allclose(
        filtered(cli, float2d_npy, tmp_path, "-k", "sobel-vertical", "--presets", opt_dir, env=env),
        3 * x,
        rtol=1e-6,
    )


def test_environment_with_several_folders(cli, float2d_npy, tmp_path, user_presets):
    import os

    other = tmp_path / "other"
    other.mkdir()
    (other / "two.toml").write_text("matrix = [[2]]\n")
    env = {"CONVCLI_PRESETS": f"{user_presets}{os.pathsep}{other}"}
    np.testing.assert_allclose(
        filtered(cli, float2d_npy, tmp_path, "-k", "two", env=env), 2 * float2d_npy.pixels, rtol=1e-6
    )
    filtered(cli, float2d_npy, tmp_path, "-k", "diag", env=env)


BAD_PRESETS = [
    ("invalid toml", "bad.toml", "matrix = [[1, 2], [3, 4]\n", ("bad.toml",)),
    ("invalid json", "bad.json", '{"matrix": [[1, 2]', ("bad.json",)),
    ("neither matrix nor generator", "bad.toml", 'description = "nothing"\n', ("bad.toml", "matrix")),
    ("both matrix and generator", "bad.toml", 'generator = "box"\nmatrix = [[1]]\n', ("bad.toml",)),
    ("unknown generator", "bad.toml", 'generator = "sinc"\n', ("bad.toml", "sinc")),
    ("ragged matrix", "bad.toml", "matrix = [[1, 2], [3]]\n", ("bad",)),
    ("nan in matrix", "bad.toml", "matrix = [[nan, 1]]\n", ("bad", "NaN")),
    ("one-dimensional matrix", "bad.toml", "matrix = [1, 2, 3]\n", ("bad",)),
    ("strings in matrix", "bad.json", '{"matrix": [["a", "b"]]}', ("bad",)),
    ("json list", "bad.json", "[[1, 2]]", ("bad.json",)),
    ("params not a table", "bad.toml", 'generator = "box"\nparams = 3\n', ("bad.toml", "params")),
    ("not utf-8", "bad.toml", b"matrix = [[1]] # \xff\xfe\n", ("bad.toml",)),
]


@pytest.mark.parametrize(
    "filename, content, mentions", [b[1:] for b in BAD_PRESETS], ids=[b[0] for b in BAD_PRESETS]
)
def test_bad_user_preset_one_line_error(cli, float_npy, tmp_path, list_folder, filename, content, mentions):
    folder = tmp_path / "mine"
    folder.mkdir()
    path = folder / filename
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cli.fail(
        "filter", float_npy.path, "-k", "bad", "--presets", folder, "-o", out_dir / "y.npy", mentions=mentions
    )
    cli.fail(
        "filter",
        float_npy.path,
        "-k",
        "bad",
        "-o",
        out_dir / "y.npy",
        mentions=mentions,
        env={"CONVCLI_PRESETS": str(folder)},
    )
    assert list_folder(out_dir) == []
    # the text listing may have printed the presets before the bad one; --json prints nothing
    cli.fail("kernels", "--presets", folder, mentions=mentions, empty_stdout=False)
    cli.fail("kernels", "--presets", folder, "--json", mentions=mentions)
    cli.fail("kernels", "--presets", folder, "show", "bad", mentions=mentions)


def test_bad_user_preset_does_not_break_other_presets(cli, float2d_npy, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "bad.toml").write_text("matrix = [[1, 2\n")
    filtered(cli, float2d_npy, tmp_path, "-k", "sobel-vertical", "--presets", folder)


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ("../x", "../x"),
        ("../mine/diag", "diag"),
        ("..", "'..'"),
        ("mine/diag", "mine/diag"),
        ("sub\\diag", "preset name"),
    ],
)
def test_preset_name_with_a_path_errors_cleanly(
    cli, float_npy, tmp_path, user_presets, list_folder, spec, mentions
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cli.fail(
        "filter",
        float_npy.path,
        "-k",
        spec,
        "--presets",
        user_presets,
        "-o",
        out_dir / "y.npy",
        mentions=mentions,
    )
    assert list_folder(out_dir) == []


@pytest.mark.parametrize("where", ["option", "environment"])
def test_presets_folder_that_does_not_exist(cli, float_npy, tmp_path, where):
    missing = tmp_path / "nope"
    if where == "option":
        cli.fail("filter", float_npy.path, "-k", "box", "--presets", missing, mentions="nope")
    else:
        cli.fail(
            "filter", float_npy.path, "-k", "box", env={"CONVCLI_PRESETS": str(missing)}, mentions="nope"
        )
    assert not (tmp_path / "x-box.npy").exists()
