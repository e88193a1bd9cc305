"""A hostile user against convcli's promises about outputs (issue #14, "Every promise holds").

1. No input is ever overwritten: not a kernel file, a preset file or a ``--matrix`` file either,
   however it is named (the same path, ``./``, a symbolic link to its folder, a hard link).
2. One image that cannot be written (a legal long name, any OSError, a bug) fails alone.
3. A standard output that closes early or is full is an error, never "wrote stdout".
4. ``--output-template`` takes only its plain fields, with bounded widths.
5. Every JSON line is standard JSON (no ``Infinity`` or ``NaN``).

Through Typer's CliRunner, and as real processes where pipes and exit codes are involved.
Every file is generated here.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONVCLI = [sys.executable, "-m", "convcli"]


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CONVCLI_PRESETS"}
    env.update(extra)
    return env


def run(args, cwd, env=None, timeout=120, **kwargs):
    return subprocess.run(
        CONVCLI + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        env=env or environment(),
        **kwargs,
    )


def png(path: Path, width=13, height=10, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if p.name.endswith(".tmp"))


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("convcli: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def strict_loads(line: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


# ------------------------------------------------- 1. inputs named as outputs


@pytest.fixture
def files(tmp_path):
    """An image, a .npy kernel, a text kernel and a CSV matrix, all in tmp_path."""
    png(tmp_path / "a.png")
    np.save(tmp_path / "k.npy", np.array([[1.0, 0.0, -1.0]] * 3))
    (tmp_path / "k.txt").write_text("1 0 -1\n2 0 -2\n1 0 -1\n")
    (tmp_path / "m.csv").write_text("1,2,3\n4,5,6\n7,8,9\n")
    return tmp_path


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    "output",
    ["k.npy", "./k.npy", "link/k.npy", "hard.npy"],
    ids=["same", "dot-slash", "folder-symlink", "hard-link"],
)
def test_kernel_file_named_as_output_is_refused(cli, files, monkeypatch, output):
    monkeypatch.chdir(files)
    os.symlink(".", "link")
    os.link("k.npy", "hard.npy")
    before = snapshot(files)
    result = cli.fail(
        "filter", "a.png", "-k", "k.npy", "-o", output, "--overwrite", mentions=(output, "input")
    )
    assert "kernel file 'k.npy'" in result.stderr
    assert snapshot(files) == before and leftovers(files) == []


def test_kernel_file_named_by_a_template_is_refused(cli, files, monkeypatch):
    monkeypatch.chdir(files)
    before = snapshot(files)
    for command in ("filter", "upsample"):
        template = "{parent}/k.npy"  # where the template lands: the kernel, already there
        cli.fail(command, "a.png", "-k", "k.npy", "--output-template", template, mentions="kernel file")
    assert snapshot(files) == before


@pytest.mark.parametrize("matrix", ["m.csv", "./m.csv", "link/m.csv"])
def test_matrix_file_named_as_output_is_refused(cli, files, monkeypatch, matrix):
    monkeypatch.chdir(files)
    os.symlink(".", "link")
    before = snapshot(files)
    result = cli.fail("filter", "--matrix", matrix, "-k", "2", "-o", "m.csv", mentions=("m.csv", "input"))
    assert "--matrix file" in result.stderr
    assert snapshot(files) == before


def test_kernel_file_named_as_matrix_output_is_refused(cli, files, monkeypatch):
    monkeypatch.chdir(files)
    before = snapshot(files)
    cli.fail(
        "filter", "--matrix", "1 2 3; 4 5 6; 7 8 9", "-k", "k.txt", "-o", "k.txt", mentions="kernel file"
    )
    os.link("k.npy", "hard.npy")
    cli.fail("upsample", "--matrix", "1 2; 3 4", "-k", "k.npy", "-o", "hard.npy", mentions="kernel file")
    assert snapshot(files) == before | {"hard.npy": before["k.npy"]}


@pytest.mark.parametrize("how", ["--presets", "CONVCLI_PRESETS"])
def test_preset_file_hard_linked_as_output_is_refused(cli, files, monkeypatch, how):
    monkeypatch.chdir(files)
    presets = files / "presets"
    presets.mkdir()
    (presets / "mine.toml").write_text('description = "mine"\nmatrix = [[0, 1], [1, 0]]\n')
    os.link(presets / "mine.toml", "out.png")  # the output is the preset file under another name
    args, env = ["filter", "a.png", "-k", "mine", "-o", "out.png"], None
    if how == "--presets":
        args += ["--presets", "presets"]
    else:
        env = {"CONVCLI_PRESETS": str(presets)}
    result = cli.fail(*args, env=env, mentions=("out.png", "input"))
    assert "preset file" in result.stderr
    assert "matrix = [[0, 1], [1, 0]]" in (presets / "mine.toml").read_text()


def test_image_hard_linked_as_output_is_refused(cli, files, monkeypatch):
    monkeypatch.chdir(files)
    os.link("a.png", "b.png")
    before = snapshot(files)
    cli.fail("pool", "a.png", "-o", "b.png", mentions=("b.png", "input"))
    assert snapshot(files) == before


def test_kernel_as_output_refused_before_any_work_in_a_process(files):
    (files / "in").mkdir()
    for name in ("x", "y"):
        png(files / "in" / f"{name}.png")
    before = snapshot(files)
    result = run(["filter", "in", "-k", "k.npy", "--output-template", "{parent}/../k.npy"], files)
    assert result.returncode == 2
    line = one_error_line(result.stderr.decode())
    assert "k.npy" in line and "never overwrites an input" in line
    assert snapshot(files) == before and sorted(os.listdir(files / "in")) == ["x.png", "y.png"]


# ------------------------------------------- 2. one image fails, the others go on


def test_a_legal_long_output_name_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    png(tmp_path / "a.png")
    name = "n" * 246 + ".png"  # 250 bytes: legal; its temporary name used to be 264
    result = cli.ok("filter", "a.png", "-o", name)
    assert name in result.stdout
    assert Image.open(tmp_path / name).size == (9, 6)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("letter", ["n", "é", "漢"])
def test_temporary_names_fit_whenever_the_name_fits(tmp_path, letter):
    from convcli.io.images import temporary_name, write_atomic_bytes

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for size in (limit - 20, limit - 14, limit - 13, limit - 4):
        name = letter * ((size - 4) // len(letter.encode())) + ".npy"
        first, second = temporary_name(tmp_path / name), temporary_name(tmp_path / name)
        for tmp in (first, second):
            assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".")
            assert Path(tmp).name.endswith(".tmp") and len(os.fsencode(Path(tmp).name)) <= limit
            os.unlink(tmp)
        assert first != second
        write_atomic_bytes(tmp_path / name, b"data")
        assert (tmp_path / name).read_bytes() == b"data"
    assert leftovers(tmp_path) == []


def test_long_names_in_a_folder_batch_fail_alone(tmp_path):
    """A worker pool: one output of 250 bytes (legal), one of 259 (too long), two plain ones."""
    folder = tmp_path / "in"
    legal, too_long = "l" * 234, "t" * 246  # + "-gaussian.png": 247 and 259 bytes
    for name in ("a", legal, too_long, "z"):
        png(folder / f"{name}.png")
    result = run(["filter", "in", "-o", "out", "-j", "2"], tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("convcli: error:")]
    assert len(errors) == 1 and too_long in errors[0] and "255" in errors[0], stderr
    assert "done 3, skipped 0, failed 1 of 4" in stderr
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"{n}-gaussian.png" for n in ("a", legal, "z"))
    assert leftovers(tmp_path) == []


def test_a_file_name_that_is_no_text_is_reported_not_fatal(tmp_path):
    """Bytes that are no UTF-8 in a name (``\\xff``): its report line is written with escapes
    by a strict standard output, where it used to raise UnicodeEncodeError mid-batch."""
    png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "c.png").write_bytes((tmp_path / "in" / "a.png").read_bytes())
    os.rename(os.fsencode(tmp_path / "in" / "c.png"), os.fsencode(tmp_path / "in") + b"/\xff.png")
    result = run(["pool", "in", "-o", "out", "-j", "1"], tmp_path, env=environment(PYTHONIOENCODING="utf-8"))
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "wrote out/\\udcff-maxpool2.png" in result.stdout.decode()
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b"a-maxpool2.png", b"\xff-maxpool2.png"]


@pytest.mark.parametrize(
    "code", [errno.EIO, errno.ENOSPC, errno.EACCES, errno.ENAMETOOLONG, errno.EROFS, errno.EMFILE]
)
def test_any_oserror_of_one_image_fails_it_alone(cli, tmp_path, monkeypatch, code):
    import convcli.run.process as process_module

    for name in ("a", "b", "c"):
        png(tmp_path / "in" / f"{name}.png")
    real_write = process_module.write_atomic

    def write(path, *args, **kwargs):
        if Path(path).name.startswith("b"):
            raise OSError(code, os.strerror(code), str(path))
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(process_module, "write_atomic", write)
    result = cli.run("filter", tmp_path / "in", "-o", tmp_path / "out", "-j", "1", "--json")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    records = [strict_loads(line) for line in result.stdout.splitlines()]
    assert ["error" in r for r in records] == [False, True, False]
    assert os.strerror(code) in records[1]["error"] and "b-gaussian.png" in records[1]["error"]
    assert sorted(os.listdir(tmp_path / "out")) == ["a-gaussian.png", "c-gaussian.png"]


def test_an_unexpected_exception_fails_one_image_alone(cli, tmp_path, monkeypatch):
    import convcli.run.process as process_module

    for name in ("a", "b", "c"):
        png(tmp_path / "in" / f"{name}.png")
    real_load = process_module.load_image

    def load(path, *args, **kwargs):
        if Path(path).name == "b.png":
            raise RuntimeError("a bug, somewhere")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(process_module, "load_image", load)
    result = cli.run("filter", tmp_path / "in", "-o", tmp_path / "out", "-j", "1")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("convcli: error:")]
    assert len(errors) == 1 and "b.png" in errors[0] and "RuntimeError: a bug, somewhere" in errors[0]
    assert sorted(os.listdir(tmp_path / "out")) == ["a-gaussian.png", "c-gaussian.png"]


def test_a_failure_under_quiet_json_is_still_said(cli, tmp_path):
    png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"not a png")
    result = cli.run("pool", tmp_path / "in", "-o", tmp_path / "out", "-q", "--json", "-j", "1")
    assert result.exit_code == 1 and result.stdout == ""
    assert "b.png" in one_error_line(result.stderr)
    assert os.listdir(tmp_path / "out") == ["a-maxpool2.png"]


BUGGY_LOADER = """
import convcli.run.process as process

_load = process.load_image


def load_image(path, *args, **kwargs):
    if "bug" in str(path):
        raise RuntimeError("a bug in a worker")
    return _load(path, *args, **kwargs)


process.load_image = load_image
"""


def test_an_unexpected_exception_in_a_worker_process_fails_alone(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent(BUGGY_LOADER))
    for name in ("a", "bug", "c", "d"):
        png(tmp_path / "in" / f"{name}.png")
    path = os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))
    result = run(["filter", "in", "-o", "out", "-j", "2"], tmp_path, env=environment(PYTHONPATH=path))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("convcli: error:")]
    assert len(errors) == 1 and "bug.png" in errors[0] and "a bug in a worker" in errors[0], stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a-gaussian.png", "c-gaussian.png", "d-gaussian.png"]


# ------------------------------------------------------ 3. standard output failing


@pytest.fixture
def big_png(tmp_path) -> Path:
    """Noise, so that its PNG (about 1.4 MB) overflows any pipe's buffer."""
    return png(tmp_path / "big.png", width=700, height=700, seed=3)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_stdout_closed_early_is_an_error(tmp_path, big_png, buffered):
    env = environment()
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    else:
        env["PYTHONUNBUFFERED"] = "1"  # a raw stdout writes what the pipe takes, silently short
    args = [*CONVCLI, "filter", big_png.name, "-k", "identity", "-o", "-"]
    child = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.read(10).startswith(b"\x89PNG")
    child.stdout.close()  # the reader goes away, as `| head -c 10` does
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1, stderr
    line = one_error_line(stderr)
    assert "standard output was closed" in line and "wrote" not in stderr

    # with standard error gone too: the exit code alone says it
    child = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stderr.close()
    child.stdout.read(10)
    child.stdout.close()
    assert child.wait(timeout=60) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("args", [["-o", "-"], ["-o", "out.png"], ["-o", "out.png", "--json"]])
def test_stdout_on_a_full_disk_is_one_line(tmp_path, args):
    png(tmp_path / "a.png")
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [*CONVCLI, "filter", "a.png", *args],
            cwd=tmp_path,
            env=environment(),
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert result.returncode == 1
    line = one_error_line(result.stderr.decode())
    assert "No space left on device" in line and "wrote" not in line


def test_a_table_to_a_closed_pipe_is_one_line(tmp_path):
    (tmp_path / "m.txt").write_text("\n".join(" ".join(["1"] * 30) for _ in range(600)))
    args = [*CONVCLI, "filter", "--matrix", "m.txt", "-k", "1"]
    child = subprocess.Popen(
        args, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.read(5)
    child.stdout.close()
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1
    assert "standard output was closed" in one_error_line(stderr)


def test_a_failed_stdout_write_is_never_reported_as_written(cli, tmp_path, monkeypatch):
    import convcli.run.process as process_module

    def broken(stream, *args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(process_module, "write_stream", broken)
    png(tmp_path / "a.png")
    result = cli.run("filter", tmp_path / "a.png", "-o", "-")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "standard output was closed" in one_error_line(result.stderr)
    assert "wrote" not in result.stdout + result.stderr


# -------------------------------------------------------------- 4. templates

HOSTILE_TEMPLATES = {
    "attribute": ("{stem.foo}.png", "not a field"),
    "index": ("{stem[0]}.png", "not a field"),
    "position": ("{0}.png", "not a field"),
    "empty field": ("{}.png", "not a field"),
    "unknown field": ("{nope}.png", "not a field"),
    "conversion": ("{stem!r}.png", "conversion"),
    "huge width": ("{stem:>99999999}.png", "at most 255"),
    "huge precision": ("{stem:.999999999999}.png", "at most 255"),
    "thousands of digits": ("{stem:>" + "9" * 5000 + "}.png", "at most 255"),
    "nested field": ("{stem:{op}}.png", "cannot hold fields"),
    "bad spec": ("{stem:d}.png", "not a valid format spec"),
    "unclosed": ("{stem.png", "write {{ and }} for braces"),
    "lone brace": ("stem}.png", "write {{ and }} for braces"),
    "blank": ("  ", "empty"),
}


@pytest.mark.parametrize("template, mentions", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES.keys())
def test_hostile_templates_are_refused_with_one_line(cli, tmp_path, monkeypatch, template, mentions):
    monkeypatch.chdir(tmp_path)  # what a template would write lands here
    png(tmp_path / "a.png")
    png(tmp_path / "b.png", seed=1)
    before = sorted(os.listdir(tmp_path))
    args = [tmp_path / "a.png", tmp_path / "b.png", "--output-template", template]
    cli.fail("filter", *args, mentions=("--output-template", mentions))
    assert sorted(os.listdir(tmp_path)) == before


def test_field_widths_are_bounded_at_255(cli, tmp_path):
    png(tmp_path / "photo.png")
    cli.fail("pool", tmp_path / "photo.png", "--output-template", "{stem:_<256}.png", mentions="at most 255")
    for template, name in [
        ("{stem:_>8.3}-{op}{{x}}.{ext}", "_____pho-pool{x}.png"),
        ("{stem:_<250}.png", "photo" + "_" * 245 + ".png"),  # 254 bytes
    ]:
        cli.ok("pool", tmp_path / "photo.png", "--output-template", str(tmp_path / template))
        assert (tmp_path / name).exists()


def test_a_template_rendering_a_too_long_name_fails_per_image(tmp_path):
    png(tmp_path / "in" / ("s" * 130 + ".png"))
    png(tmp_path / "in" / "short.png")
    result = run(["filter", "in", "--output-template", "out/{stem}-{stem}.png"], tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("convcli: error:")]
    assert len(errors) == 1 and "--output-template" in errors[0] and "s" * 130 in errors[0], stderr
    assert "Traceback" not in stderr
    assert os.listdir(tmp_path / "out") == ["short-short.png"]


def test_hostile_template_in_a_process(tmp_path):
    png(tmp_path / "a.png")
    result = run(["filter", "a.png", "--output-template", "{stem:>99999999}.png"], tmp_path)
    assert result.returncode == 2
    assert "--output-template" in one_error_line(result.stderr.decode())
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


# ------------------------------------------------------------- 5. strict JSON


@pytest.mark.parametrize(
    "matrix, kernel, expected",
    [
        ("3e38 3e38 0 1; 3e38 3e38 0 1", "1 1; 1 1", [[None, None, 2.0]]),  # float32 overflows: inf
        ("1e38 -1e38", "1e38 1e38", [[None]]),  # inf + -inf: NaN
    ],
)
def test_matrix_json_is_strict(cli, matrix, kernel, expected):
    result = cli.ok("filter", "--matrix", matrix, "-k", kernel, "--json")
    record = strict_loads(result.stdout)
    assert record["result"] == expected


def test_json_lines_parse_strictly_in_a_process(tmp_path):
    png(tmp_path / "a.png")
    result = run(["filter", "--matrix", "3e38 3e38; 1 1", "-k", "1 1; 1 1", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert strict_loads(result.stdout.decode())["result"] == [[None]]
    images = run(["filter", "a.png", "-o", "out.npy", "--json"], tmp_path)
    assert images.returncode == 0, images.stderr
    assert strict_loads(images.stdout.decode())["output"] == "out.npy"


def test_convcli_prints_json_only_through_the_strict_writer():
    """json.dumps writes Infinity and NaN unless told not to; convcli goes through strict_json."""
    root = Path(__file__).resolve().parents[1] / "convcli"
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if path.name != "strict_json.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "json.dumps(" in line or "json.dump(" in line
    ]
    assert offenders == []
