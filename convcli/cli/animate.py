"""``--animate PATH``: the operation drawn step by step into a GIF, on ``--matrix`` or a small image.

Everything is checked before anything is computed or written: the name (``.gif``), that it
is no file the run reads, the sizes (:func:`convcli.draw.animation.check_animation`, from an
image's header before it is decoded).  ``--dry-run`` says what would be written, and writes
nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConvcliError
from ..geometry.sizes import size_json


class PlannedAnimation:
    """An animation checked and ready to draw; :meth:`write` draws it, writes it, reports it."""

    def __init__(self, operation, matrix, path: str, frames: int, shared):
        self.operation, self.matrix, self.path, self.frames = operation, matrix, path, frames
        self.json_out, self.quiet, self.dry_run = shared.json_out, shared.quiet, shared.dry_run

    def write(self) -> None:
        if self.dry_run:
            self._report(f"would write {self.path} ({self.frames} frames)", {"dry_run": True})
            return
        from ..draw.animation import animate

        film = animate(self.operation, self.matrix)
        film.save(self.path)
        width, height = film.size
        self._report(
            f"wrote {self.path} ({len(film.scenes)} frames, {width}x{height})",
            {"size": size_json((height, width))},
        )

    def _report(self, line: str, extra: dict) -> None:
        if self.quiet:
            return
        from ..run.report import encodable, stream_failed

        if self.json_out:
            from ..strict_json import dumps

            line = dumps({"animation": self.path, "frames": self.frames, **extra})
        try:
            print(encodable(line, sys.stdout) if not self.json_out else line, flush=True)
        except OSError as exc:
            raise stream_failed(exc, sys.stdout) from None


def plan_animation(operation, shared, reads: tuple[tuple[str, str], ...]) -> PlannedAnimation | None:
    """Check ``--animate`` with the other options; load its matrix, or its one small image (the
    size from the header first, then decoded as one channel: luma for colour).  None without
    ``--animate``."""
    if shared.animate is None:
        return None
    from ..draw.animation import check_animation
    from ..io.images import check_output_folder, load_image, read_size
    from ..run.plan import name_problem, refuse_reads_as_outputs
    from .matrix import load_matrix, matrix_file

    path = shared.animate
    if Path(path).suffix.lower() != ".gif":
        raise ConvcliError(f"--animate: writes a GIF; name the file .gif, got {path!r}")
    check_output_folder(Path(path))
    problem = name_problem(path, templated=False)
    if problem is not None:
        raise ConvcliError(f"--animate: {problem}")
    if Path(path).is_dir():
        raise ConvcliError(f"--animate: {path!r} is a folder; name the GIF file to write")
    reads = list(reads)
    if shared.matrix is not None:
        source = matrix_file(shared.matrix)
        if source is not None:
            reads.append(("--matrix file", str(source)))
        refuse_reads_as_outputs([path], reads)
        matrix = load_matrix(shared.matrix)
    else:
        if not shared.inputs or len(shared.inputs) != 1 or shared.inputs[0] == "-":
            raise ConvcliError(
                "--animate: draws a --matrix or one small image file (INPUT; not several, not stdin)"
            )
        if shared.output is not None:
            raise ConvcliError("--animate: on an image the GIF is the only output; drop -o")
        if shared.explain or shared.at is not None:
            raise ConvcliError("--explain and --at work on a small matrix given with --matrix")
        image = shared.inputs[0]
        if Path(image).is_dir():
            raise ConvcliError(f"--animate: {image!r} is a folder; name one small image file")
        refuse_reads_as_outputs([path], [*reads, ("image", image)])
        check_animation(operation, read_size(image))
        loaded = load_image(
            image, gray=shared.gray or True, max_pixels=shared.max_pixels
        )  # luma unless --gray mean
        if loaded.channels != 1:
            raise ConvcliError(
                f"--animate: draws one channel; {image!r} has {loaded.channels} (convert it to gray)"
            )
        matrix = loaded.data[:, :, 0]
    frames = check_animation(operation, matrix.shape)
    return PlannedAnimation(operation, matrix, path, frames, shared)
