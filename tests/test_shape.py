"""convcli shape: sizes against Dumoulin & Visin's worked examples and PyTorch-verified cases,
receptive fields against known networks, the CLI, and its start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from convcli.cli.app import app
from convcli.errors import ConvcliError
from convcli.geometry.receptive import parse_layer, run_stack

runner = CliRunner()


def out_size(size: int, *specs: str) -> int:
    results = run_stack((size, size), [parse_layer(s, i) for i, s in enumerate(specs, 1)])
    return results[-1].output_size[0]


# Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016):
# the numbered relationships with the numbers of their figures. The transposed cases are
# written as PyTorch's ConvTranspose2d(kernel, stride, padding, output_padding).
DUMOULIN_VISIN = [
    ("rel 1: no padding, unit strides (fig 2.1)", 4, ["conv:k=3"], 2),
    ("rel 2: padding, unit strides (fig 2.2)", 5, ["conv:k=4,p=2"], 6),
    ("rel 3: half padding (fig 2.3)", 5, ["conv:k=3,p=1"], 5),
    ("rel 4: full padding (fig 2.4)", 5, ["conv:k=3,p=2"], 7),
    ("rel 5: no padding, strides (fig 2.6)", 5, ["conv:k=3,s=2"], 2),
    ("rel 6: padding, strides (fig 2.7)", 5, ["conv:k=3,s=2,p=1"], 3),
    ("rel 6: padding, strides, odd (fig 2.8)", 6, ["conv:k=3,s=2,p=1"], 3),
    ("rel 7: pooling", 5, ["pool:k=3,s=1"], 3),
    ("rel 8: transposed of no padding, unit strides (fig 4.1)", 2, ["tconv:k=3"], 4),
    ("rel 9: transposed of padding, unit strides (fig 4.2)", 6, ["tconv:k=4,p=2"], 5),
    ("rel 10: transposed of half padding (fig 4.3)", 5, ["tconv:k=3,p=1"], 5),
    ("rel 11: transposed of full padding (fig 4.4)", 7, ["tconv:k=3,p=2"], 5),
    ("rel 12: transposed of no padding, strides (fig 4.5)", 2, ["tconv:k=3,s=2"], 5),
    ("rel 13: transposed of padding, strides (fig 4.6)", 3, ["tconv:k=3,s=2,p=1"], 5),
    ("rel 14: transposed of padding, strides, odd (fig 4.7)", 3, ["tconv:k=3,s=2,p=1,op=1"], 6),
    ("rel 15: dilated (fig 5.1)", 7, ["conv:k=3,d=2"], 3),
]


@pytest.mark.parametrize("name, size, specs, expected", DUMOULIN_VISIN, ids=[c[0] for c in DUMOULIN_VISIN])
def test_dumoulin_visin_relationships(name, size, specs, expected):
    assert out_size(size, *specs) == expected


# Each number written here by hand from PyTorch's documented formulas and checked against
# torch 2.x: Conv2d, MaxPool2d/AvgPool2d (incl. ceil_mode), ConvTranspose2d.
PYTORCH_CASES = [
    (224, ["conv:k=7,s=2,p=3"], 112),  # ResNet stem
    (224, ["conv:k=7,s=2,p=3", "pool:k=3,s=2,p=1"], 56),
    (227, ["conv:k=11,s=4"], 55),  # AlexNet conv1
    (32, ["conv:k=3,p=2,d=2"], 32),
    (5, ["pool:k=2,s=2"], 2),
    (5, ["pool:k=2,s=2,ceil"], 3),  # last window starts at 4 < 5: kept
    (6, ["pool:k=3,s=2,p=1"], 3),
    (6, ["pool:k=3,s=2,p=1,ceil"], 4),  # starts at 6 < 6 + 1: kept
    (5, ["pool:k=2,s=2,p=1,ceil"], 3),  # would start at 6 >= 5 + 1: dropped
    (1, ["pool:k=3,s=3,ceil"], 1),  # window larger than the input, ceil
    (9, ["pool:k=3,s=1,p=1,d=2"], 7),  # dilated; padding <= 3 // 2 (d not counted)
    (4, ["tconv:k=4,s=2,p=1"], 8),  # DCGAN upsampling
    (7, ["tconv:k=3,s=2,p=1,op=1"], 14),
    (5, ["tconv:k=3,s=1,p=0,op=1,d=2"], 10),  # output padding below the dilation
    (10, ["conv:k=4,p=same"], 10),
    (7, ["conv:k=2,s=2,p=same"], 4),  # ceil(7 / 2)
]


@pytest.mark.parametrize("size, specs, expected", PYTORCH_CASES)
def test_pytorch_cases(size, specs, expected):
    assert out_size(size, *specs) == expected


def test_same_padding_sides():
    [even] = run_stack((10, 9), [parse_layer("conv:k=4x3,p=same", 1)])
    # k=4x3 is 4 wide, 3 high: height total 2 -> 1 top, 1 bottom; width total 3 -> 1 left, 2 right
    assert even.sides == (1, 1, 1, 2)
    [strided] = run_stack((7, 7), [parse_layer("conv:k=2,s=2,p=same", 1)])
    assert strided.sides == (0, 1, 0, 1)


def test_non_square_values_are_width_first():
    [result] = run_stack((612, 530), [parse_layer("conv:k=3x5,s=2x1", 1)])
    assert result.output_size == (608, 264)  # height: 612 - 5 + 1; width: (530 - 3) // 2 + 1


@pytest.mark.parametrize(
    "specs, field, jump, start",
    [
        (["conv:k=3"], 3, 1, 1),
        (["conv:k=3", "conv:k=3"], 5, 1, 2),
        (["conv:k=3", "conv:k=3", "conv:k=3"], 7, 1, 3),
        (["conv:k=3,p=1", "conv:k=3,p=1"], 5, 1, 0),
        (["conv:k=11,s=4"], 11, 4, 5),  # AlexNet conv1
        (["conv:k=3,p=1", "conv:k=3,p=1", "pool:k=2"], 6, 2, 0.5),  # VGG block
        (["conv:k=7,s=2,p=3", "pool:k=3,s=2,p=1"], 11, 4, 0),  # ResNet stem
        (["conv:k=3,d=2"], 5, 1, 2),
    ],
)
def test_receptive_fields(specs, field, jump, start):
    results = run_stack((64, 64), [parse_layer(s, i) for i, s in enumerate(specs, 1)])
    last = results[-1]
    assert (last.width.field, last.width.jump, last.width.start) == (field, jump, start)


def test_transposed_receptive_field_by_brute_force():
    """Which inputs reach each output of tconv:k=4,s=2,p=1, counted directly."""
    k, s, p, n = 4, 2, 1, 6
    out = (n - 1) * s - 2 * p + k
    span = 0
    for y in range(out):
        hits = [i for i in range(n) for m in range(k) if i * s - p + m == y]
        span = max(span, max(hits) - min(hits))
    [result] = run_stack((n, n), [parse_layer("tconv:k=4,s=2,p=1", 1)])
    assert result.width.field == 1 + span
    assert result.width.jump == 0.5


@pytest.mark.parametrize(
    "spec, message",
    [
        ("pool:k=3,p=2", "pooling padding must be at most half the window"),
        ("pool:k=3,p=2,d=2", "so padding <= 1"),  # PyTorch: dilation does not count
        ("conv:k=9", "the output would be"),
        ("tconv:k=3,s=2,op=2", "output padding must be smaller than the stride or the dilation"),
        ("conv:s=2", "the kernel size k= is required"),
        ("dense:k=3", "unknown layer type"),
        ("conv:k=3,q=1", "unknown setting 'q'"),
        ("conv:k=3,s=0", "at least 1"),
        ("conv:k=3,s=2xjunk", "WIDTHxHEIGHT"),
        ("pool:k=2,ceil=maybe", "ceil takes no value"),
    ],
)
def test_impossible_layers_name_position_and_rule(spec, message):
    with pytest.raises(ConvcliError) as info:
        run_stack((5, 5), [parse_layer("conv:k=1", 1), parse_layer(spec, 2)])
    assert str(info.value).startswith(f"layer 2 ({spec}): ")
    assert message in str(info.value)


# ------------------------------------------------------------------- the CLI


def test_cli_table_for_people():
    result = runner.invoke(app, ["shape", "530x612", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "conv:k=3" in result.stdout and "528x610" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "530x612 -> 528x610"


def test_cli_json_fields():
    result = runner.invoke(app, ["shape", "224", "conv:k=7,s=2,p=3", "pool:k=3,s=2,p=1,ceil", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input_size"] == {"width": 224, "height": 224}
    # ceil((112 + 2 - 2 - 1) / 2) + 1 = 57; the last window starts at 112 < 112 + 1: kept
    assert data["output_size"] == {"width": 57, "height": 57}
    conv, pool = data["layers"]
    assert conv["op"] == "conv" and conv["kernel"] == {"width": 7, "height": 7}
    assert conv["stride"] == {"x": 2, "y": 2} and conv["dilation"] == {"x": 1, "y": 1}
    assert conv["padding"] == {"top": 3, "bottom": 3, "left": 3, "right": 3}
    assert conv["receptive_field"] == {"width": 7, "height": 7} and conv["jump"] == {"x": 2, "y": 2}
    assert pool["ceil_mode"] is True and pool["start"] == {"x": 0, "y": 0}
    assert pool["receptive_field"] == {"width": 11, "height": 11}


def test_cli_explain_puts_the_numbers_in():
    result = runner.invoke(app, ["shape", "530x612", "-k", "3", "--explain"])
    assert "height: floor((612 + 2*0 - 1*(3-1) - 1) / 1) + 1 = 610" in result.stdout
    ceil = runner.invoke(app, ["shape", "5", "pool:k=2,s=2,p=1,ceil", "--explain"])
    assert "ceil((5 + 2*1 - 1*(2-1) - 1) / 2) + 1 = 4" in ceil.stdout
    assert "dropped: 3" in ceil.stdout


def test_cli_image_path_as_size(tmp_path):
    from PIL import Image

    Image.new("RGB", (530, 612)).save(tmp_path / "d.png")
    result = runner.invoke(app, ["shape", str(tmp_path / "d.png"), "conv:k=3", "--json"])
    assert json.loads(result.stdout)["output_size"] == {"width": 528, "height": 610}


def test_cli_errors_are_one_line_exit_2():
    result = runner.invoke(app, ["shape", "5", "conv:k=1", "pool:k=3,p=2"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("convcli: error: layer 2 (pool:k=3,p=2):")
    assert len(result.stderr.strip().splitlines()) == 1
    both = runner.invoke(app, ["shape", "5", "conv:k=1", "-k", "3"])
    assert both.exit_code == 2


def run_convcli(*args):
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "convcli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_subprocess_fast_path_imports_nothing_heavy():
    result = run_convcli("shape", "224", "conv:k=7,s=2,p=3", "pool:k=3,s=2,p=1")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines()[-1] == "224x224 -> 56x56"
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"numpy", "scipy", "PIL", "typer", "click", "rich"}.isdisjoint(imported), imported
    assert "convcli" in imported


def test_subprocess_help_and_errors_go_through_typer():
    result = run_convcli("shape", "--help")
    assert result.returncode == 0 and "LAYER" in result.stdout
    bad = run_convcli("shape", "5", "conv:k=9")
    assert bad.returncode == 2
    assert [l for l in bad.stderr.splitlines() if not l.startswith("import time:")] == [
        "convcli: error: layer 1 (conv:k=9): the output would be 0x0 from a 5x5 input; "
        "the (dilated) window must fit the padded input"
    ]


# ------------------------------------------------------- exact fractions, repetition


def test_jump_after_a_transposed_layer_is_an_exact_fraction():
    result = runner.invoke(app, ["shape", "64", "conv:k=3,p=1", "tconv:k=2,s=2", "tconv:k=3,s=3", "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout)["layers"][-1]
    # 1 / 2 / 3 input pixels per output unit; the start (tconv: c + (p - (k'-1)/2) / s * j):
    # 0 + (0 - 1/2) / 2 = -1/4, then -1/4 + (0 - 1) / 3 * 1/2 = -5/12
    assert last["jump_fraction"] == {"x": "1/6", "y": "1/6"} and last["jump"] == {
        "x": 0.166667,
        "y": 0.166667,
    }
    assert last["start_fraction"] == {"x": "-5/12", "y": "-5/12"}
    assert last["receptive_field_exact"] is True and isinstance(last["receptive_field"]["width"], int)
    table = runner.invoke(app, ["shape", "64", "conv:k=3,p=1", "tconv:k=2,s=2", "tconv:k=3,s=3"]).stdout
    assert "│    1/6, 1/6 │ -5/12, -5/12 │" in table


RESNET18 = [  # the stem, then 2 + 2 + 2 + 2 basic blocks of two 3x3 convs (the first of a stage strided)
    "conv:k=7,s=2,p=3",
    "pool:k=3,s=2,p=1",
    "4*conv:k=3,p=1",
    "conv:k=3,s=2,p=1",
    "3*conv:k=3,p=1",
    "conv:k=3,s=2,p=1",
    "3*conv:k=3,p=1",
    "conv:k=3,s=2,p=1",
    "3*conv:k=3,p=1",
]


def test_repetition_gives_resnet18_in_nine_tokens():
    result = runner.invoke(app, ["shape", "224", *RESNET18, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["layers"]) == 18 and data["output_size"] == {"width": 7, "height": 7}
    # the widest field by the Distill recurrence for ResNet-18's main path:
    # 1 + 6 + 2*2 + 4*(4*2) + 8*(1*2 + 3*2) + 16*(2 + 6) + 32*(2 + 6) = 435 (written out by hand:
    # the stem 7 and pool 3 at jumps 1 and 2; then each 3x3 conv adds 2*jump)
    stem = 1 + 6 * 1 + 2 * 2
    convs = 4 * 2 * 4 + (2 * 4 + 3 * 2 * 8) + (2 * 8 + 3 * 2 * 16) + (2 * 16 + 3 * 2 * 32)
    assert data["layers"][-1]["receptive_field"] == {"width": stem + convs, "height": 435}
    assert data["layers"][-1]["jump"] == {"x": 32, "y": 32}
    spelled = runner.invoke(app, ["shape", "224", *(t.replace("*", "x") for t in RESNET18), "--json"])
    assert json.loads(spelled.stdout) == data


@pytest.mark.parametrize(
    "token, message",
    [
        ("1000000000000*conv:k=3", "layer 2 (1000000000000*conv:k=3): a repeat count is 1 to 1000"),
        ("0*conv:k=3", "layer 2 (0*conv:k=3): a repeat count is 1 to 1000"),
        ("4*conv:k=3,q=1", "layer 2 (4*conv:k=3,q=1): unknown setting 'q'"),
        ("1000*conv:k=1", "layer 2 (1000*conv:k=1): a stack has at most 1000 layers"),
        ("9" * 5000 + "*conv:k=3", "a repeat count is 1 to 1000, got '9999"),
    ],
)
def test_repetition_errors_name_the_token(token, message):
    result = runner.invoke(app, ["shape", "64", "conv:k=1", token])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("convcli: error: ") and message in line


def test_a_repeated_layer_that_cannot_run_names_its_position_and_token():
    result = runner.invoke(app, ["shape", "5", "4*conv:k=3"])
    assert result.stderr.strip() == (
        "convcli: error: layer 3 (4*conv:k=3): the output would be 0x0 from a 1x1 input; "
        "the (dilated) window must fit the padded input"
    )


# ------------------------------------------------------------------ --draw


def unbounded_field(layers, unit):
    """First and last input position of one output unit, by the definition, the input and every
    padding counted as positions (no border): explicit sets through the layers, last to first.
    Layers are (op, k, s, p, d) along one axis."""
    units = {unit}
    for op, k, s, p, d in reversed(layers):
        if op == "tconv":
            units = {(y + p - j * d) // s for y in units for j in range(k) if (y + p - j * d) % s == 0}
        else:
            units = {y * s - p + j * d for y in units for j in range(k)}
    return min(units), max(units)


DRAWN = ["conv:k=3,p=1", "pool:k=3,s=2,p=1", "conv:k=3,p=1"]
DRAWN_AXIS = [("conv", 3, 1, 1, 1), ("pool", 3, 2, 1, 1), ("conv", 3, 1, 1, 1)]
BASE = (40, 80, 120)


def tinted(colour):
    from convcli.draw.fields import TINT, TINT_ALPHA

    return tuple(int(np.rint(c + TINT_ALPHA * (t - c))) for c, t in zip(colour, TINT))


@pytest.fixture
def flat_png(tmp_path):
    from PIL import Image

    path = tmp_path / "flat.png"
    Image.new("RGB", (30, 24), BASE).save(path)  # 30 wide, 24 high
    return path


@pytest.mark.parametrize("at", [(0, 0), (5, 9)])
def test_draw_marks_the_field_the_definition_gives(flat_png, tmp_path, at):
    from PIL import Image

    from convcli.draw.fields import OUTLINE, PADDING_GRAY

    out = tmp_path / "rf.png"
    result = runner.invoke(
        app, ["shape", str(flat_png), *DRAWN, "--draw", str(out), "--at", f"{at[0]},{at[1]}", "--json"]
    )
    assert result.exit_code == 0, result.output
    drawn = json.loads(result.stdout)["drawn"]
    top, bottom = unbounded_field(DRAWN_AXIS, at[0])
    left, right = unbounded_field(DRAWN_AXIS, at[1])
    assert drawn["field"] == {"top": top, "bottom": bottom, "left": left, "right": right}
    assert (bottom - top + 1, right - left + 1) == (9, 9)
    # the canvas: the image grown by the field's reach past it (at (0, 0): 4 rows and columns)
    grow_top, grow_left = max(0, -top), max(0, -left)
    zoom = drawn["zoom"]
    assert zoom == max(1, min(16, 512 // max(24 + grow_top, 30 + grow_left)))
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == ((24 + grow_top) * zoom, (30 + grow_left) * zoom, 3)

    def pixel(row, col, dy=0, dx=0):  # the top-left canvas pixel of input pixel (row, col)
        return tuple(int(v) for v in picture[(row + grow_top) * zoom + dy, (col + grow_left) * zoom + dx])

    assert pixel(top, left) == OUTLINE and pixel(bottom, right, zoom - 1, zoom - 1) == OUTLINE
    assert pixel(top, right, 0, zoom - 1) == OUTLINE and pixel(bottom, left, zoom - 1, 0) == OUTLINE
    assert pixel(top + 1, left + 1) == tinted(PADDING_GRAY if top < 0 else BASE)  # inside
    assert pixel(bottom - 1, right - 1) == tinted(BASE)
    assert pixel(bottom + 1, right + 1) == BASE  # outside, on the image
    if top < 0:
        assert pixel(top + 1, right + 1) == PADDING_GRAY  # outside, in the grown canvas
        assert pixel(0, 0, -1, -1) == tinted(PADDING_GRAY)  # padding inside the field


def test_draw_dots_the_neighbours_centres_the_jump_apart(flat_png, tmp_path):
    from PIL import Image

    from convcli.draw.fields import CENTRE, NEIGHBOUR

    out = tmp_path / "rf.png"
    result = runner.invoke(app, ["shape", str(flat_png), *DRAWN, "--draw", str(out), "--json"])
    drawn = json.loads(result.stdout)["drawn"]
    assert drawn["at"] == {"row": (12 - 1) // 2, "col": (15 - 1) // 2}  # the centre of the 15x12 output
    zoom = drawn["zoom"]
    picture = np.asarray(Image.open(out).convert("RGB"))
    row, col = drawn["at"]["row"], drawn["at"]["col"]

    def centre_pixel(r, c):  # the centre of the field of output (r, c), in canvas pixels
        (t, b), (l, rr) = unbounded_field(DRAWN_AXIS, r), unbounded_field(DRAWN_AXIS, c)
        return tuple(
            int(v) for v in picture[int((t + b) / 2 * zoom + zoom / 2), int((l + rr) / 2 * zoom + zoom / 2)]
        )

    assert centre_pixel(row, col) == CENTRE
    assert centre_pixel(row + 1, col) == centre_pixel(row, col - 3) == NEIGHBOUR  # 2 input pixels apart
    assert centre_pixel(row + 4, col) != NEIGHBOUR  # only 3 neighbours each side


@pytest.mark.parametrize(
    "args, message",
    [
        (["--draw", "{same}"], "is an input file; convcli never overwrites an input"),
        (["--draw", "{out}", "--at", "12,0"], "--at: (12, 0) is outside the 15x12 output"),
        (["--draw", "{out}", "--at", "1;2"], "--at: expected ROW,COL"),
        (["--draw", "{out}", "--at", "9" * 5000 + ",1"], "--at: expected ROW,COL"),
        (["--at", "1,1"], "--at: names the output unit whose field --draw draws"),
        (["--draw", "{tmp}/rf.xyz"], "unknown extension '.xyz'"),
        (["--draw", "{tmp}/missing/rf.png"], "rf.png"),
    ],
)
def test_draw_errors_are_one_line_and_write_nothing(flat_png, tmp_path, args, message):
    before = flat_png.read_bytes()
    args = [a.format(same=flat_png, out=tmp_path / "rf.png", tmp=tmp_path) for a in args]
    result = runner.invoke(app, ["shape", str(flat_png), *DRAWN, *args])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("convcli: error: ") and message in line
    assert flat_png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.png"]


def test_draw_a_gap_of_a_transposed_layer_is_refused(flat_png, tmp_path):
    result = runner.invoke(
        app, ["shape", str(flat_png), "tconv:k=1,s=3", "--draw", str(tmp_path / "r.png"), "--at", "1,1"]
    )
    assert result.exit_code == 2
    assert "reads no input pixel" in result.stderr


def test_draw_as_a_subprocess(flat_png, tmp_path):
    from PIL import Image

    out = tmp_path / "rf.png"
    result = subprocess.run(
        [sys.executable, "-m", "convcli", "shape", str(flat_png), *DRAWN, "--draw", str(out), "--at", "0,0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        f"{out}: output (0, 0): field rows -4..4, columns -4..4, 9x9 (the canvas grown by t4 b0 l4 r0), "
        "drawn at 15x"
    )
    assert Image.open(out).size == (34 * 15, 28 * 15)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.png", "rf.png"]  # no temporary left


def test_numbers_past_2_to_the_256_are_one_error_line_not_a_traceback():
    """Strides of 2^31 cropped back by their padding keep the sizes small while the jump's
    numerator (or denominator) multiplies: nine layers pass 2^256."""
    for op in ("conv", "tconv"):
        result = runner.invoke(app, ["shape", "2", f"1000*{op}:k=1,s=2147483647,p=1073741823"])
        assert result.exit_code == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"convcli: error: layer 9 (1000*{op}:k=1,s=2147483647,p=1073741823): ")
        assert "over 2^256" in line


def test_a_field_past_the_work_limit_is_marked_a_bound():
    args = ["shape", "5", "tconv:k=2000000,s=1000000", "conv:k=1000000"]
    table = runner.invoke(app, args).stdout
    assert "│            ≤3x3 │" in table
    last = json.loads(runner.invoke(app, [*args, "--json"]).stdout)["layers"][-1]
    assert last["receptive_field"] == {"width": 3, "height": 3} and last["receptive_field_exact"] is False


def test_draw_with_image_command_stages(flat_png, tmp_path):
    """The stage form (filter ... + pool ...) draws the same field as the layers it means."""
    from PIL import Image

    stages = [
        "filter",
        "-k",
        "3",
        "-p",
        "1",
        "+",
        "pool",
        "-k",
        "3",
        "-s",
        "2",
        "-p",
        "1",
        "+",
        "filter",
        "-k",
        "3x3",
    ]
    stages += ["-p", "1"]
    by_stages, by_layers = tmp_path / "stages.png", tmp_path / "layers.png"
    first = runner.invoke(
        app, ["shape", str(flat_png), *stages, "--draw", str(by_stages), "--at", "0,0", "--json"]
    )
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        app, ["shape", str(flat_png), *DRAWN, "--draw", str(by_layers), "--at", "0,0", "--json"]
    )
    assert json.loads(first.stdout)["drawn"]["field"] == {"top": -4, "bottom": 4, "left": -4, "right": 4}
    assert json.loads(first.stdout)["drawn"]["field"] == json.loads(second.stdout)["drawn"]["field"]
    assert np.array_equal(np.asarray(Image.open(by_stages)), np.asarray(Image.open(by_layers)))


def test_help_states_the_layer_grammar():
    result = runner.invoke(app, ["shape", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "A LAYER is TYPE:SETTING,SETTING... with TYPE conv, pool or tconv" in text
    assert "N*LAYER repeats it N times" in text and "--draw" in text and "--at" in text


def test_draw_dots_stay_visible_on_a_large_image(tmp_path):
    """At zoom 1, a dot is a disc of radius 2 where the jump leaves room, not one pixel."""
    from PIL import Image

    from convcli.draw.fields import CENTRE

    source, out = tmp_path / "big.png", tmp_path / "rf.png"
    Image.new("RGB", (600, 520), BASE).save(source)
    result = runner.invoke(app, ["shape", str(source), "3*conv:k=3,s=2", "--draw", str(out), "--json"])
    drawn = json.loads(result.stdout)["drawn"]
    # outputs 520 -> 259 -> 129 -> 64 high, 600 -> 299 -> 149 -> 74 wide; the centre unit (31, 36)
    # reads rows 31*8 .. 31*8 + 14 and columns 36*8 .. 36*8 + 14 (jump 8, field 1 + 2 + 4 + 8)
    assert drawn["zoom"] == 1 and drawn["field"] == {"top": 248, "bottom": 262, "left": 288, "right": 302}
    picture = np.asarray(Image.open(out).convert("RGB"))
    cy, cx = 255, 295  # the field's centre
    for dy, dx in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]:
        assert tuple(picture[cy + dy, cx + dx]) == CENTRE
