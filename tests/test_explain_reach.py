"""--explain says which input columns and rows no window reaches, which ceil_mode windows hang
outside, and writes its size formula width first (WIDTHxHEIGHT), --at staying ROW,COL.

The unreached positions are found here by brute force: every tap of every window listed."""

from __future__ import annotations

import json

import pytest


def matrix_text(height, width):
    return "; ".join(" ".join(str(r * width + c) for c in range(width)) for r in range(height))


def unreached(n, k, s, d, before, after):
    out = (n + before + after - d * (k - 1) - 1) // s + 1
    touched = {o * s - before + m * d for o in range(out) for m in range(k)}
    return [i for i in range(n) if i not in touched]


def explain_notes(cli, *args):
    record = json.loads(cli.ok(*args, "--explain", "--json").stdout)
    return record["explain"]["notes"]


def test_stride_3_on_5x5_names_the_columns_the_second_jump_misses(cli):
    notes = explain_notes(cli, "filter", "--matrix", matrix_text(5, 5), "-k", "1,1,1;1,1,1;1,1,1", "-s", "3")
    assert unreached(5, 3, 3, 1, 0, 0) == [3, 4]
    assert notes[0].startswith("no window reaches input columns 3, 4: ")
    assert "the next jump would start at column 3 and need columns 3..5" in notes[0]
    assert notes[1].startswith("no window reaches input rows 3, 4: ")
    text = cli.ok(
        "filter", "--matrix", matrix_text(5, 5), "-k", "1,1,1;1,1,1;1,1,1", "-s", "3", "--explain"
    ).stdout
    assert "no window reaches input columns 3, 4" in " ".join(text.split())


@pytest.mark.parametrize(
    "args, width_case, height_case",
    [
        # (n, k, s, d, before, after) per axis; input 7 wide x 6 high
        (["-k", "1,1;1,1", "-s", "3x2"], (7, 2, 3, 1, 0, 0), (6, 2, 2, 1, 0, 0)),  # stride > window across
        (["-k", "1,1;1,1", "-d", "3", "-s", "4"], (7, 2, 4, 3, 0, 0), (6, 2, 4, 3, 0, 0)),
        (["-k", "1,1,1", "-s", "2", "-p", "1"], (7, 3, 2, 1, 1, 1), (6, 1, 2, 1, 1, 1)),
        (["-k", "1", "-s", "1"], (7, 1, 1, 1, 0, 0), (6, 1, 1, 1, 0, 0)),  # all reached: no note
    ],
)
def test_filter_notes_match_brute_force(cli, args, width_case, height_case):
    notes = explain_notes(cli, "filter", "--matrix", matrix_text(6, 7), *args)
    expected = []
    for name, case in (("column", width_case), ("row", height_case)):
        missing = unreached(*case)
        if missing:
            expected.append((name, missing))
    assert len(notes) == len(expected)
    for note, (name, missing) in zip(notes, expected):
        listed = note.split(": ")[0].split(f"{name}s " if len(missing) > 1 else f"{name} ")[1]
        if ".." in listed:
            low, high = map(int, listed.split(".."))
            assert list(range(low, high + 1)) == missing
        else:
            assert [int(v) for v in listed.split(", ")] == missing


def test_pool_ceil_mode_names_the_windows_that_hang_outside(cli):
    # 5 wide x 4 high, window 2, stride 2, ceil_mode: output 3 wide (last window 4..5), 2 high
    notes = explain_notes(cli, "pool", "--matrix", matrix_text(4, 5), "-k", "2", "--ceil-mode")
    hanging = [n for n in notes if n.startswith("ceil_mode:")]
    assert hanging == [
        "ceil_mode: the window of output column 2 covers input columns 4..5, past the right edge (its "
        "last column, padding included, is 4); its cells outside count for nothing"
    ]
    # without ceil_mode the last column is the one no window reaches
    notes = explain_notes(cli, "pool", "--matrix", matrix_text(4, 5), "-k", "2")
    assert notes[-1].startswith("no window reaches input column 4: ")


def test_size_formula_is_width_first(cli):
    # 7 wide x 4 high, 3x1 kernel (1 row, 3 columns): width 5, height 4
    text = cli.ok("filter", "--matrix", matrix_text(4, 7), "-k", "1,1,1", "--explain").stdout
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("output size:")
    assert lines[start + 1] == "width: floor((7 + 0 + 0 - 1*(3-1) - 1) / 1) + 1 = 5"
    assert lines[start + 2] == "height: floor((4 + 0 + 0 - 1*(1-1) - 1) / 1) + 1 = 4"
    assert "output 5x4 (from 7x4)" in text
    for command in (["pool", "-k", "2"], ["upsample", "-k", "1,1", "-s", "2"]):
        text = cli.ok(*command, "--matrix", matrix_text(4, 7), "--explain").stdout
        lines = [line.strip() for line in text.splitlines()]
        start = lines.index("output size:")
        assert lines[start + 1].startswith("width: (7") or lines[start + 1].startswith("width: floor((7")
        assert lines[start + 2].startswith("height:")
