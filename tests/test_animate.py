"""--animate: the frames drawn against the oracles' windows, scatters and values.

Each frame is checked where it is drawn: a pixel of every input and output cell's fill (the
layout says where the cell is; the oracle says which cells output i reads, or which outputs
input i reaches) is orange-ish exactly for the cells of the current step.  The numbers shown
are checked against the explicit-loop oracles of tests/oracles.py.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from oracles import conv2d_reference, conv_transpose_reference, pad_reference, pool_reference, same_sides
from PIL import Image

from convcli.draw.animation import MAX_SIDE, MAX_STEPS, animate, check_animation, fit
from convcli.errors import ConvcliError
from convcli.ops.catalog import Filter, Pool, Upsample
from convcli.ops.chain import Chain

X5 = np.array(
    [[3, 0, 1, 2, 7], [1, 5, 8, 9, 3], [2, 7, 2, 5, 1], [0, 1, 3, 1, 7], [4, 2, 1, 6, 2]], np.float32
)
X5_TEXT = "3 0 1 2 7; 1 5 8 9 3; 2 7 2 5 1; 0 1 3 1 7; 4 2 1 6 2"
X6 = np.arange(36, dtype=np.float32).reshape(6, 6) % 7


def is_marked(rgb) -> bool:
    """The current window (orange, magenta in the padding, pale orange past it) against plain
    values (gray), padding (blue) and empty cells (white)."""
    r, _, b = rgb
    return r - b > 30


def is_padding(rgb) -> bool:
    r, _, b = rgb
    return b - r > 20


def drawn_cells(grid):
    rows, cols = grid.shape
    return {(grid.origin[0] + r, grid.origin[1] + c) for r in range(rows) for c in range(cols)}


def marked_cells(film, frame: int, name: str) -> set:
    image = film.frame(frame).convert("RGB")
    grid = getattr(film.scenes[frame], name)
    layout = film.layouts[frame]
    return {cell for cell in drawn_cells(grid) if is_marked(image.getpixel(layout.probe(name, *cell)))}


def window_oracle(at, stride, kernel_hw, before, dilation):
    """Input cells (negative in the padding) of output ``at``: row i*s - top + m*d, by the
    definition of a strided, dilated window."""
    return {
        (at[0] * stride[0] - before[0] + m * dilation[0], at[1] * stride[1] - before[1] + n * dilation[1])
        for m in range(kernel_hw[0])
        for n in range(kernel_hw[1])
    }


def check_windows(film, out_hw, stride, kernel_hw, before, dilation):
    out_h, out_w = out_hw
    assert len(film.scenes) == out_h * out_w + 2
    for n in range(out_h * out_w):
        at = divmod(n, out_w)
        expected = window_oracle(at, stride, kernel_hw, before, dilation)
        assert expected <= drawn_cells(film.scenes[n + 1].input), (at, expected)
        assert marked_cells(film, n + 1, "input") == expected, (n, at)
        assert marked_cells(film, n + 1, "output") == {at}
    assert marked_cells(film, 0, "input") == set() == marked_cells(film, len(film.scenes) - 1, "input")


def shown_output(film, frame=-1):
    return np.array(film.scenes[frame].output.values, dtype=np.float64)


FILTERS = [
    # (kernel, Filter keywords, oracle's padding sides, stride, dilation): the tutorial's 3x3
    # stride 2 padding 1; stride 3 on 5x5; dilation with reflect padding; an even kernel's
    # uneven "same" padding; a rectangular stride under true convolution
    (np.array([[1, 0, -1]] * 3, np.float32), {"padding": 1, "stride": 2}, (1, 1, 1, 1), (2, 2), (1, 1)),
    (np.ones((2, 2), np.float32), {"stride": 3}, (0, 0, 0, 0), (3, 3), (1, 1)),
    (
        np.array([[1, 2], [3, 4]], np.float32),
        {"padding": 2, "dilation": 2, "pad_mode": "reflect"},
        (2, 2, 2, 2),
        (1, 1),
        (2, 2),
    ),
    (np.ones((2, 4), np.float32), {"padding": "same", "pad_mode": "circular"}, None, (1, 1), (1, 1)),
    (
        np.array([[1, 2, 3], [0, 0, -1]], np.float32),
        {"stride": (1, 2), "mode": "convolution", "padding": (0, 1)},
        (0, 0, 1, 1),
        (1, 2),
        (1, 1),
    ),
]


@pytest.mark.parametrize("kernel, keywords, padding, stride, dilation", FILTERS)
def test_filter_frames_highlight_each_window_and_show_the_oracles_values(
    kernel, keywords, padding, stride, dilation
):
    op = Filter(kernel, **keywords)
    padding = padding or same_sides(X5.shape, kernel.shape)
    film = animate(op, X5)
    shown_kernel = kernel[::-1, ::-1] if keywords.get("mode") == "convolution" else kernel
    expected = conv2d_reference(
        X5, shown_kernel, stride, padding, dilation, keywords.get("pad_mode", "zeros")
    )
    check_windows(film, expected.shape, stride, kernel.shape, (padding[0], padding[2]), dilation)
    np.testing.assert_allclose(shown_output(film), expected, rtol=1e-6)
    assert shown_output(film).tolist() == op.apply(X5[:, :, None])[:, :, 0].tolist()
    # frame i shows outputs 0..i-1, and nothing after
    third = film.scenes[3].output
    assert sum(v is not None for row in third.values for v in row) == 3


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_cells_show_the_pad_modes_values_tinted_apart(mode):
    film = animate(Filter(np.ones((3, 3), np.float32), padding=2, pad_mode=mode), X5)
    grid = film.scenes[0].input
    assert grid.origin == (-2, -2) and grid.shape == (9, 9)
    assert np.array(grid.values).tolist() == pad_reference(X5, 2, 2, 2, 2, mode).tolist()
    image, layout = film.frame(0).convert("RGB"), film.layouts[0]
    for row, col in drawn_cells(grid):
        rgb = image.getpixel(layout.probe("input", row, col))
        inside = 0 <= row < 5 and 0 <= col < 5
        assert is_padding(rgb) != inside and (rgb[0] == rgb[1] == rgb[2]) == inside, (row, col, rgb)


POOLS = [
    # ceil-mode windows hanging past the input (6x6, 3x3 stride 2: the last window reads
    # column 6); padding with ceil mode; min with dilation
    ({"size": 3, "stride": 2, "ceil_mode": True, "op": "max"}, X6),
    ({"size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "op": "mean"}, X5),
    ({"size": 2, "stride": 1, "dilation": 2, "op": "min"}, X5),
]


@pytest.mark.parametrize("keywords, x", POOLS)
def test_pool_frames_highlight_each_window_even_where_it_hangs_outside(keywords, x):
    op = Pool(**keywords)
    film = animate(op, x)
    k, s, p = keywords["size"], keywords["stride"], keywords.get("padding", 0)
    d = keywords.get("dilation", 1)
    expected = pool_reference(x, k, s, p, d, keywords.get("ceil_mode", False), keywords["op"])
    check_windows(film, expected.shape, (s, s), (k, k), (p, p), (d, d))
    np.testing.assert_allclose(shown_output(film), expected, rtol=1e-6)


def test_a_hanging_window_is_drawn_past_the_input_and_said():
    film = animate(Pool(3, stride=2, ceil_mode=True), X6)
    last_step = film.scenes[-2]
    kinds = {
        (r, c): last_step.input.kinds[r - last_step.input.origin[0]][c - last_step.input.origin[1]]
        for r, c in drawn_cells(last_step.input)
    }
    assert {cell for cell, kind in kinds.items() if kind == "outside"} == {(6, c) for c in range(7)} | {
        (r, 6) for r in range(6)
    }
    assert last_step.caption == "out(2, 2) = max(0, 1, 6, 0) = 6"  # X6[4:6, 4:6]
    assert last_step.note == "5 cells of this window hang past the padding: not counted"


@pytest.mark.parametrize(
    "kernel, stride, padding, output_padding, dilation",
    [
        (np.array([[1, 1], [1, 2]], np.float32), 2, 0, 0, 1),
        (np.array([[1, 2, 1], [0, 1, 0], [1, 0, 1]], np.float32), 2, 1, 1, 1),
        (np.array([[1, -1], [2, 1]], np.float32), 1, 1, 0, 2),
    ],
)
def test_upsample_frames_scatter_each_input_and_accumulate_the_oracles_sums(
    kernel, stride, padding, output_padding, dilation
):
    x = X5[:3, :4]
    op = Upsample(kernel, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    film = animate(op, x)
    height, width = x.shape
    assert len(film.scenes) == height * width + 2
    expected = conv_transpose_reference(x, kernel, stride, padding, output_padding, dilation)
    reached = set()
    for n in range(height * width):
        i, j = divmod(n, width)
        targets = {
            (i * stride - padding + m * dilation, j * stride - padding + q * dilation)
            for m in range(kernel.shape[0])
            for q in range(kernel.shape[1])
        }
        assert marked_cells(film, n + 1, "input") == {(i, j)}
        assert marked_cells(film, n + 1, "output") == targets, (i, j)
        reached |= targets
        mask = np.zeros_like(x)
        mask.flat[: n + 1] = 1
        partial = conv_transpose_reference(x * mask, kernel, stride, padding, output_padding, dilation)
        grid = film.scenes[n + 1].output
        for r, c in reached:
            if 0 <= r < partial.shape[0] and 0 <= c < partial.shape[1]:
                assert grid.values[r + padding][c + padding] == pytest.approx(partial[r, c]), (n, r, c)
    final = shown_output(film)[padding : padding + expected.shape[0], padding : padding + expected.shape[1]]
    np.testing.assert_allclose(final, expected, rtol=1e-6)


def test_a_chain_is_drawn_one_stage_after_another():
    chain = Chain([Filter(np.ones((2, 2), np.float32)), Pool(2)])
    film = animate(chain, X5)
    assert len(film.scenes) == (16 + 2) + (4 + 2)
    assert film.scenes[0].title.startswith("stage 1 of 2: filter 2x2")
    assert film.scenes[18].title.startswith("stage 2 of 2: max pool 2x2")
    expected = pool_reference(conv2d_reference(X5, np.ones((2, 2))), 2)
    np.testing.assert_allclose(shown_output(film), expected)
    assert {frame.size for frame in film.frames} == {film.size}


def test_captions_write_the_arithmetic_and_name_the_cells_no_window_reads():
    film = animate(Filter(np.ones((3, 3), np.float32), stride=3), X5)  # the tutorial's second jump
    formula = "floor((5 + 0 + 0 - 1*(3-1) - 1) / 3) + 1 = 1"
    assert {film.scenes[0].caption, film.scenes[0].note} == {f"height: {formula}", f"width: {formula}"}
    assert (
        film.scenes[1].caption
        == "out(0, 0) = "
        + " + ".join(f"{int(v)}*1" for v in X5[:3, :3].ravel())
        + f" = {int(X5[:3, :3].sum())}"
    )
    assert film.scenes[-1].caption == "output 1x1 done; no window reads input rows 3..4 or columns 3..4"
    assert film.scenes[-1].crossed == {(i, j) for i in range(5) for j in range(5) if i > 2 or j > 2}
    skipping = animate(Pool(2, stride=3, dilation=2), X6)  # taps 0, 2 then 3, 5: 1 and 4 unread
    assert skipping.scenes[-1].caption == "output 2x2 done; no window reads input rows 1, 4 or columns 1, 4"
    assert skipping.scenes[-1].crossed == {(i, j) for i in range(6) for j in range(6) if 1 in (i % 3, j % 3)}
    assert fit("out(0, 0) = 1*1 + 2*2 + 3*3 = 14", 24) == "out(0, 0) = 1*1 ... = 14"
    assert fit("x(0, 0) = 1 scatters: out(0, 0) += 1*1, out(0, 1) += 1*2", 45) == (
        "x(0, 0) = 1 scatters: out(0, 0) += 1*1, ..."
    )


def test_the_gif_loops_and_holds_every_frame():
    film = animate(Filter(np.array([[1, 0, -1]] * 3, np.float32), padding=1, stride=2), X5)
    gif = Image.open(io.BytesIO(film.gif_bytes()))
    assert gif.n_frames == len(film.scenes) == 11 and gif.info["loop"] == 0
    durations = []
    for index in range(gif.n_frames):
        gif.seek(index)
        durations.append(gif.info["duration"])
        assert gif.convert("RGB").tobytes() == film.frame(index).convert("RGB").tobytes(), index
    assert durations == film.durations


def test_sizes_over_the_limits_are_refused_before_any_work():
    with pytest.raises(ConvcliError, match=f"up to {MAX_SIDE}x{MAX_SIDE}; the padded input is 35x33"):
        check_animation(Filter(np.ones((3, 3)), padding=1), (31, 33))
    with pytest.raises(ConvcliError, match=f"up to {MAX_STEPS} steps .* this run has 441"):
        check_animation(Filter(np.ones((3, 3))), (23, 23))
    with pytest.raises(ConvcliError, match=re.escape("the output (stage 2) is 40x40")):
        check_animation(Chain([Pool(1), Upsample(np.ones((2, 2)), stride=2)]), (20, 20))
    with pytest.raises(ConvcliError, match="the output with its cropped rows is 33x33"):
        check_animation(Upsample(np.ones((3, 3)), stride=2, padding=1), (16, 16))
    assert check_animation(Upsample(np.ones((2, 2)), stride=2), (16, 16)) == 16 * 16 + 2


# ------------------------------------------------------------------ the command line


def gif_frames(path) -> int:
    with Image.open(path) as gif:
        return gif.n_frames


def test_cli_matrix_animate_writes_the_gif_after_the_table(cli, tmp_path):
    out = tmp_path / "slide.gif"
    result = cli.ok(
        "filter", "--matrix", X5_TEXT, "-k", "1,0,-1;1,0,-1;1,0,-1", "-p", "1", "-s", "2", "--animate", out
    )
    assert "output 3x3 (from 5x5)" in result.stdout
    film = animate(Filter(np.array([[1, 0, -1]] * 3, np.float32), padding=1, stride=2), X5)
    width, height = film.size
    assert result.stdout.splitlines()[-1] == f"wrote {out} (11 frames, {width}x{height})"
    assert out.read_bytes() == film.gif_bytes()


def test_cli_animate_json_chain_and_quiet(cli, tmp_path):
    out = tmp_path / "chain.gif"
    result = cli.ok(
        "filter", "--matrix", X5_TEXT, "-k", "box:size=2", "+", "pool", "-k", "2", "--animate", out, "--json"
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and '"animation"' in lines[1] and '"frames": 24' in lines[1]
    assert gif_frames(out) == 24
    quiet = cli.ok("upsample", "--matrix", "1 2; 3 4", "-k", "1,1;1,2", "-s", "2", "--animate", out, "-q")
    assert quiet.stdout == "" and gif_frames(out) == 6


def test_cli_dry_run_writes_nothing(cli, tmp_path):
    out = tmp_path / "slide.gif"
    result = cli.ok("pool", "--matrix", X5_TEXT, "--animate", out, "--dry-run")
    assert result.stdout.splitlines()[-1] == f"would write {out} (6 frames)"
    assert list(tmp_path.iterdir()) == []


def small_png(path, side=6):
    pixels = (np.arange(side * side).reshape(side, side) * 7 % 256).astype(np.uint8)
    Image.fromarray(pixels, "L").save(path)
    return pixels.astype(np.float64) / 255


def test_cli_animates_one_small_image(cli, tmp_path):
    values = small_png(tmp_path / "tiny.png")
    out = tmp_path / "tiny.gif"
    cli.ok("filter", tmp_path / "tiny.png", "-k", "box:size=3", "-s", "2", "--animate", out)
    assert gif_frames(out) == 4 + 2
    film = animate(Filter(np.full((3, 3), 1 / 9, np.float32), stride=2), values.astype(np.float32))
    np.testing.assert_allclose(
        shown_output(film), conv2d_reference(values, np.full((3, 3), 1 / 9), 2), rtol=1e-5
    )


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--matrix", X5_TEXT, "--animate", "{tmp}/a.png"], "name the file .gif"),
        (["--matrix", X5_TEXT, "--animate", "{tmp}/missing/a.gif"], "does not exist"),
        (["--matrix", "; ".join(["1 " * 33] * 33), "--animate", "{tmp}/a.gif"], "up to 32x32"),
        (["{tmp}/tiny.png", "-o", "{tmp}/b.png", "--animate", "{tmp}/a.gif"], "drop -o"),
        (["{tmp}/tiny.png", "{tmp}/tiny.png", "--animate", "{tmp}/a.gif"], "one small image"),
        (["{tmp}/big.png", "--animate", "{tmp}/a.gif"], "the padded input is 40x40"),
        (["{tmp}/tiny.gif", "--animate", "{tmp}/tiny.gif"], "never overwrites an input"),
        (["--matrix", X5_TEXT, "--animate", "{tmp}/folder.gif"], "is a folder"),
        (["-", "--animate", "{tmp}/a.gif"], "not stdin"),
        (["--matrix", X5_TEXT, "--animate", "{tmp}/" + "n" * 300 + ".gif"], "over the file system's limit"),
    ],
)
def test_cli_refuses_with_one_line_and_writes_nothing(cli, tmp_path, args, mentions):
    small_png(tmp_path / "tiny.png")
    small_png(tmp_path / "big.png", side=40)
    Image.open(tmp_path / "tiny.png").save(tmp_path / "tiny.gif")
    (tmp_path / "folder.gif").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    cli.fail("filter", "-k", "2", *[a.replace("{tmp}", str(tmp_path)) for a in args], mentions=mentions)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert list((tmp_path / "folder.gif").iterdir()) == []


def test_a_real_process_writes_the_gif_and_fails_with_one_line(tmp_path):
    small_png(tmp_path / "tiny.png", side=5)
    command = [sys.executable, "-m", "convcli", "pool", str(tmp_path / "tiny.png"), "-k", "3", "-s", "2"]
    done = subprocess.run(
        [*command, "--ceil-mode", "--animate", str(tmp_path / "p.gif")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert gif_frames(tmp_path / "p.gif") == 4 + 2
    refused = subprocess.run([*command, "--animate", str(tmp_path / "p.txt")], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"convcli: error: --animate: writes a GIF; name the file .gif, got '{tmp_path}/p.txt'"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gif", "tiny.png"]


def test_titles_write_pairs_width_first():
    x = np.ones((6, 6), np.float32)
    film = animate(Filter(np.ones((2, 3), np.float32), stride=(1, 2), dilation=(2, 1)), x)
    assert film.scenes[0].title == "filter 3x2 (correlation), stride 2x1, dilation 1x2: 6x6 -> 2x4"
    film = animate(
        Upsample(np.ones((2, 2), np.float32), stride=(2, 1), padding=(1, 0), output_padding=(1, 0)), x[:3]
    )
    assert film.scenes[0].title == (
        "upsample 2x2 (correlation), stride 1x2, padding 0x1, output padding 0x1: 6x3 -> 7x5"
    )


@pytest.mark.parametrize("gray, weights", [([], (0.299, 0.587, 0.114)), (["--gray", "mean"], (1 / 3,) * 3)])
def test_cli_animates_a_colour_image_through_the_gray_asked_for(cli, tmp_path, gray, weights):
    rgb = (np.arange(4 * 4 * 3).reshape(4, 4, 3) * 37 % 256).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "colour.png")
    out = tmp_path / "colour.gif"
    cli.ok("filter", tmp_path / "colour.png", *gray, "-k", "1,1;1,1", "--animate", out)
    values = (rgb / 255.0) @ np.array(weights)  # the one channel drawn, by the definition
    film = animate(Filter(np.ones((2, 2), np.float32)), values.astype(np.float32))
    np.testing.assert_allclose(shown_output(film), conv2d_reference(values, np.ones((2, 2)), 1), rtol=1e-5)
    assert out.read_bytes() == film.gif_bytes()
