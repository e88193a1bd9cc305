"""convcli shape: sizes against Dumoulin & Visin's worked examples and PyTorch-verified cases,
receptive fields against known networks, the CLI, and its start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys

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
