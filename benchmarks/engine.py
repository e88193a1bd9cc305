"""Engine benchmark: convcli's library functions against OpenCV, PyTorch and scipy.ndimage.

    python benchmarks/engine.py --peers /tmp/venv-peers/bin/python [--repeat 7] [--json]
        [--size 3840x2160] [--only sobel,sobel-pad] [--no-direct]

The peers live in a venv of their own (never convcli's: they are not dependencies), made once::

    python3 -m venv /tmp/venv-peers
    /tmp/venv-peers/bin/pip install torch==2.13.0 opencv-python-headless numpy scipy

On a WIDTHxHEIGHT RGB float32 image (default 3840x2160, the same array in both processes:
one seed), each channel filtered, it times the workloads of issues 5 and 18, padded and
unpadded, for convcli (``method="auto"``), convcli's plain path (``method="direct"``) in this
process, and the peers in a child process run by ``--peers`` (OpenCV with
``cv2.setNumThreads(2)``, PyTorch CPU with ``torch.set_num_threads(2)``, scipy.ndimage; convcli
with ``workers=2``; ``--threads`` changes the 2 for all); without
``--peers`` it tries them in this process, and a peer that is not importable is skipped.  It
installs nothing.  Every tool runs once to warm up (that run's result is the one checked),
then the tools take turns, one run each, ``--repeat`` rounds (interleaved, so a load that
comes and goes hits every tool alike, and in a rotating order); ``--cpu`` times each
process's CPU seconds instead of the wall clock (steadier on a loaded machine; with
``--threads 1`` it is the work each tool does); the table gives the medians in ms, convcli's
ratio to each peer and whether the issue's targets are met:

- at most 2x OpenCV's time;
- at least 5x faster than PyTorch CPU and than scipy.ndimage.

Each peer's result is checked against convcli's (to 1e-3 of the value scale) before it is
timed, so the table never compares different work.  Each tool gets the image in its native
layout, prepared outside the timing: H x W x C numpy for convcli and OpenCV, C x 1 x H x W
tensors for PyTorch (channels as the batch), one H x W plane per channel for scipy.
Zero padding is ``cv2.BORDER_CONSTANT`` for OpenCV; unpadded kernels are OpenCV's default
border with the border rows and columns cropped off (a view, not timed).
Where a peer has no stride (OpenCV, scipy) it computes every position and the benchmark
keeps every second one (a view), as a user of that tool would; OpenCV takes
``cv2.sepFilter2D`` for a kernel that is one outer product (Sobel, Gaussian), else
``cv2.filter2D``; where a peer has no max pooling (OpenCV) or no transposed convolution
(OpenCV, scipy) the cell says "-"; so do convcli's plain path and scipy on kernels over 100
taps (the 31x31: 30-40 s a run each) unless ``--all-direct``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from convcli.engine.kernels import gaussian_kernel  # numpy only: the peers' venv imports it too

THREADS = 2  # every tool's threads (--threads)
CLOCK = time.perf_counter  # wall time; --cpu: this process's CPU time (all its threads)
SOBEL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32)


def workloads():
    """(key, title, kind, kernel, params); params use convcli's names."""
    rng = np.random.default_rng(5)
    return [
        ("sobel", "Sobel 3x3", "filter", SOBEL, {}),
        ("gauss7", "Gaussian 7x7 (sigma 1.5)", "filter", gaussian_kernel(7, 1.5).astype(np.float32), {}),
        ("gauss31", "Gaussian 31x31 (sigma 5)", "filter", gaussian_kernel(31, 5).astype(np.float32), {}),
        ("random5", "random 5x5", "filter", rng.normal(size=(5, 5)).astype(np.float32), {}),
        # Padded: -p 1 / -p same, the common case on the command line (zeros padding, as the peers).
        ("sobel-pad", "Sobel 3x3, padding 1", "filter", SOBEL, {"stride": 1, "padding": 1}),
        (
            "gauss7-pad",
            "Gaussian 7x7, padding 3",
            "filter",
            gaussian_kernel(7, 1.5).astype(np.float32),
            {"stride": 1, "padding": 3},
        ),
        (
            "gauss31-pad",
            "Gaussian 31x31, padding 15",
            "filter",
            gaussian_kernel(31, 5).astype(np.float32),
            {"stride": 1, "padding": 15},
        ),
        (
            "random5-pad",
            "random 5x5, padding 2",
            "filter",
            np.random.default_rng(6).normal(size=(5, 5)).astype(np.float32),
            {"stride": 1, "padding": 2},
        ),
        (
            "stride2",
            "3x3, stride 2, padding 1",
            "filter",
            rng.normal(size=(3, 3)).astype(np.float32),
            {"stride": 2, "padding": 1},
        ),
        (
            "stride2-valid",
            "3x3, stride 2, no padding",
            "filter",
            np.random.default_rng(7).normal(size=(3, 3)).astype(np.float32),
            {"stride": 2},
        ),
        ("maxpool", "max pool 2x2", "pool", None, {}),
        (
            "tconv",
            "transposed 4x4, stride 2",
            "tconv",
            rng.uniform(0, 0.25, size=(4, 4)).astype(np.float32),
            {"stride": 2},
        ),
    ]


def separable_1d(kernel):
    """``(column, row)`` when the kernel is one outer product (for OpenCV's sepFilter2D)."""
    u, s, vt = np.linalg.svd(kernel.astype(np.float64))
    if s[1:].sum() > 1e-7 * s[0]:
        return None
    return (u[:, 0] * np.sqrt(s[0])).astype(np.float32), (vt[0] * np.sqrt(s[0])).astype(np.float32)


# ------------------------------------------------------------------- tools


def convcli_runner(method, compiled=True):
    """convcli's call; ``compiled=False``: its numpy paths (``CONVCLI_NATIVE=0``, read per call)."""
    from convcli.engine.filtering import filter2d
    from convcli.engine.pooling import pool2d
    from convcli.engine.transposed import conv_transpose2d

    def make(kind, kernel, params, image):
        if kind == "filter":
            call = lambda: filter2d(image, kernel, method=method, workers=THREADS, **params)  # noqa: E731
        elif kind == "pool":
            call = lambda: pool2d(image, 2, method=method, workers=THREADS)  # noqa: E731
        else:
            call = lambda: conv_transpose2d(image, kernel, method=method, workers=THREADS, **params)  # noqa: E731
        if compiled:
            return call

        def numpy_paths():
            saved = os.environ.get("CONVCLI_NATIVE")
            os.environ["CONVCLI_NATIVE"] = "0"
            try:
                return call()
            finally:
                if saved is None:
                    del os.environ["CONVCLI_NATIVE"]
                else:
                    os.environ["CONVCLI_NATIVE"] = saved

        return numpy_paths

    return make


def opencv_runner():
    import cv2

    cv2.setNumThreads(THREADS)

    def make(kind, kernel, params, image):
        if kind != "filter":
            return None
        kh, kw = kernel.shape
        factors = separable_1d(kernel)
        src = np.ascontiguousarray(image)
        step = params.get("stride", 1)
        if params.get("padding"):
            border = cv2.BORDER_CONSTANT
            assert params["padding"] == kh // 2 == kw // 2

            def crop(out):
                return out[::step, ::step]

        else:
            border = cv2.BORDER_DEFAULT

            def crop(out):
                return out[
                    kh // 2 : out.shape[0] - (kh - 1 - kh // 2) : step,
                    kw // 2 : out.shape[1] - (kw - 1 - kw // 2) : step,
                ]

        if factors is not None:
            col, row = factors
            return lambda: crop(cv2.sepFilter2D(src, cv2.CV_32F, row, col, borderType=border))
        return lambda: crop(cv2.filter2D(src, cv2.CV_32F, kernel, borderType=border))

    return make, "OpenCV " + cv2.__version__


def torch_runner():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)

    def make(kind, kernel, params, image):
        t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[:, None]
        if kind == "pool":
            run = lambda: F.max_pool2d(t, 2)  # noqa: E731
        else:
            w = torch.from_numpy(np.ascontiguousarray(kernel))[None, None]
            if kind == "filter":
                stride, padding = params.get("stride", 1), params.get("padding", 0)
                run = lambda: F.conv2d(t, w, stride=stride, padding=padding)  # noqa: E731
            else:
                run = lambda: F.conv_transpose2d(t, w, stride=params["stride"])  # noqa: E731

        def go():
            with torch.inference_mode():
                return run()

        return go

    return make, "PyTorch " + torch.__version__.split("+")[0]


def scipy_runner():
    import scipy
    import scipy.ndimage as ndi

    def make(kind, kernel, params, image):
        planes = [np.ascontiguousarray(image[:, :, c]) for c in range(image.shape[2])]
        if kind == "tconv":
            return None
        if kind == "pool":
            # the 2x2 maximum at every position, then every second one
            return lambda: [ndi.maximum_filter(p, size=2)[1::2, 1::2] for p in planes]
        kh, kw = kernel.shape
        s = params.get("stride", 1)
        if params.get("padding"):
            return lambda: [ndi.correlate(p, kernel, mode="constant")[::s, ::s] for p in planes]
        return lambda: [
            ndi.correlate(p, kernel, mode="constant")[
                kh // 2 : p.shape[0] - (kh - 1 - kh // 2) : s, kw // 2 : p.shape[1] - (kw - 1 - kw // 2) : s
            ]
            for p in planes
        ]

    return make, "scipy.ndimage " + scipy.__version__


def as_hwc(result):
    """A tool's result in convcli's H x W x C layout."""
    if isinstance(result, list):
        return np.stack(result, axis=2)
    if hasattr(result, "numpy"):
        return result.numpy()[:, 0].transpose(1, 2, 0)
    result = np.asarray(result)
    return result if result.ndim == 3 else result[:, :, None]


def ms_text(value):
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def once_ms(func):
    start = CLOCK()
    func()
    return 1000 * (CLOCK() - start)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_image(size):
    width, height = size
    return np.random.default_rng(0).random((height, width, 3), dtype=np.float32)


PEERS = (("OpenCV", opencv_runner), ("PyTorch", torch_runner), ("scipy", scipy_runner))


class LocalTools:
    """Tools timed in this process: ``{name: make}`` and their labels."""

    def __init__(self, factories):
        self.makers, self.labels, self.funcs = {}, [], {}
        for name, factory in factories:
            try:
                made = factory()
            except ImportError:
                print(f"{name}: skipped (not installed)", file=sys.stderr)
                continue
            make, label = made if isinstance(made, tuple) else (made, None)
            self.makers[name] = make
            if label:
                self.labels.append(label)

    def names(self):
        return list(self.makers)

    def prepare(self, name, key, image):
        """Make the tool's call for workload ``key`` and run it once; its result (or None)."""
        _, _, kind, kernel, params = WORKLOADS[key]
        func = self.makers[name](kind, kernel, params, image)
        self.funcs[name, key] = func
        return None if func is None else as_hwc(func())

    def time(self, name, key):
        func = self.funcs.get((name, key))
        return None if func is None else once_ms(func)


class PeerProcess:
    """The peers, timed in a child process of another Python (``--peers``), one command a
    line on its standard input: the same image, the same workloads, interleaved runs."""

    def __init__(self, python, size):
        import subprocess

        self.child = subprocess.Popen(
            [python, __file__, "--serve-peers", "--size", f"{size[0]}x{size[1]}", "--threads", str(THREADS)]
            + (["--cpu"] if CLOCK is time.process_time else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(self.child.stdout.readline())  # serve_peers speaks first
        self.labels, self._names = hello["labels"], hello["names"]

    def ask(self, request):
        self.child.stdin.write(json.dumps(request) + "\n")
        self.child.stdin.flush()
        answer = json.loads(self.child.stdout.readline())
        if "error" in answer:
            raise SystemExit(f"peer process: {answer['error']}")
        return answer

    def names(self):
        return list(self._names)

    def prepare(self, name, key, image):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "result.npy")
            answer = self.ask({"prepare": [name, key], "save": path})
            return np.load(path) if answer["saved"] else None

    def time(self, name, key):
        return self.ask({"time": [name, key]})["ms"]

    def close(self):
        self.child.stdin.close()
        self.child.wait()


def serve_peers(size) -> int:
    """Child mode (``--serve-peers``): answer PeerProcess's requests, one JSON line each."""
    tools = LocalTools(PEERS)
    image = make_image(size)
    print(json.dumps({"labels": tools.labels, "names": tools.names()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "prepare" in request:
                result = tools.prepare(*request["prepare"], image)
                if result is not None:
                    np.save(request["save"], result)
                answer = {"saved": result is not None}
            else:
                answer = {"ms": tools.time(*request["time"])}
        except Exception as error:  # noqa: BLE001 - reported to the parent, which stops
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)
    return 0


WORKLOADS = {w[0]: w for w in workloads()}


def main() -> int:
    global THREADS, CLOCK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", metavar="PYTHON", help="the Python of the peers' venv (a child process)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--size", default="3840x2160", help="WIDTHxHEIGHT (default 3840x2160)")
    parser.add_argument("--only", default="", help="comma-separated workload keys")
    parser.add_argument("--no-direct", action="store_true", help="skip convcli's plain path")
    parser.add_argument(
        "--numpy-paths",
        action="store_true",
        help="time convcli's numpy paths too (CONVCLI_NATIVE=0: without the compiled loops)",
    )
    parser.add_argument(
        "--all-direct",
        action="store_true",
        help="time convcli's plain path and scipy on kernels over 100 taps too (31x31: 30-40 s a run)",
    )
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every tool (default 2)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time CPU seconds (all threads) instead of wall time: steadier on a loaded machine",
    )
    parser.add_argument("--skip", default="", help="comma-separated tools not to time (e.g. scipy)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--serve-peers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    THREADS = args.threads
    CLOCK = time.process_time if args.cpu else time.perf_counter
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.serve_peers:
        return serve_peers(size)
    width, height = size
    image = make_image(size)
    only = [k for k in args.only.split(",") if k]
    unknown = [k for k in only if k not in WORKLOADS]
    if unknown:
        raise SystemExit(f"--only: unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")

    ours = [("convcli", lambda: convcli_runner("auto"))]
    if args.numpy_paths:
        ours.append(("convcli numpy", lambda: convcli_runner("auto", compiled=False)))
    if not args.no_direct:
        ours.append(("convcli direct", lambda: convcli_runner("direct")))
    local = LocalTools(ours if args.peers else ours + list(PEERS))
    sources = [local] + ([PeerProcess(args.peers, size)] if args.peers else [])
    skip = {name.strip().lower() for name in args.skip.split(",") if name.strip()}
    tools = [(name, source) for source in sources for name in source.names() if name.lower() not in skip]
    labels = [label for source in sources for label in source.labels]
    from convcli.engine.loops import native

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{width}x{height} RGB float32, median {'CPU' if args.cpu else 'wall'} time of {args.repeat} "
        f"interleaved runs (after 1 warm-up), {THREADS} thread(s) per tool, {cores} cores "
        f"({cpu_model()}), numpy {np.__version__}, convcli's compiled loops "
        + ("on" if native() else "off")
        + ("; " + ", ".join(labels) if labels else "")
        + ("; peers in a child process (" + args.peers + ")" if args.peers else "")
    )

    results = []
    for key, title, _, kernel, _ in workloads():
        if only and key not in only:
            continue
        row = {"workload": key, "title": title, "ms": {}, "checked": {}}
        reference = None
        timed = []
        for name, source in tools:
            slow = name in ("convcli direct", "scipy") and kernel is not None and kernel.size > 100
            if slow and not args.all_direct:
                row["ms"][name] = None  # minutes per workload; --all-direct times it
                continue
            result = source.prepare(name, key, image)  # the warm-up, checked
            if result is None:
                row["ms"][name] = None
                continue
            if reference is None:
                reference = result
            else:
                scale = max(1.0, float(np.abs(reference).max()))
                error = (
                    float(np.abs(result.astype(np.float64) - reference).max())
                    if result.shape == reference.shape
                    else float("inf")
                )
                row["checked"][name] = error / scale
                if not error <= 1e-3 * scale:
                    raise SystemExit(
                        f"{title}: {name}'s result differs from convcli's "
                        f"(shape {result.shape} vs {reference.shape}, "
                        f"max error {error:.3g}); not comparing different work"
                    )
            del result
            timed.append((name, source))
        times = {name: [] for name, _ in timed}
        for round_ in range(args.repeat):  # interleaved: one run of each tool per round,
            turn = round_ % max(1, len(timed))  # in a rotating order (no tool always after another)
            for name, source in timed[turn:] + timed[:turn]:
                times[name].append(source.time(name, key))
        for name, _ in timed:
            row["ms"][name] = statistics.median(times[name])
            print(f"  {title:<28} {name:<15} {row['ms'][name]:9.1f} ms", file=sys.stderr)
        results.append(row)
    for source in sources[1:]:
        source.close()

    names = [name for name, _ in tools]
    print()
    print("| workload | " + " | ".join(f"{n} ms" for n in names) + " | targets |")
    print("|" + "---|" * (len(names) + 2))
    verdicts = []
    for row in results:
        ms = row["ms"]
        mine = ms["convcli"]
        cells = ["-" if ms.get(name) is None else ms_text(ms[name]) for name in names]
        notes = []
        cv = ms.get("OpenCV")
        if cv:
            ratio = mine / cv
            ok = ratio <= 2
            notes.append(
                f"{ratio:.1f}x OpenCV's time: "
                + (
                    "met"
                    if ok
                    else f"missed (needs <= {ms_text(2 * cv)} ms, {mine / (2 * cv):.1f}x too slow)"
                )
            )
            verdicts.append(ok)
        for peer in ("PyTorch", "scipy"):
            other = ms.get(peer)
            if other:
                speedup = other / mine
                ok = speedup >= 5
                notes.append(
                    f"{speedup:.1f}x faster than {peer}: "
                    + (
                        "met"
                        if ok
                        else f"missed (needs <= {ms_text(other / 5)} ms, {5 / speedup:.1f}x too slow)"
                    )
                )
                verdicts.append(ok)
        row["targets"] = notes
        print(f"| {row['title']} | " + " | ".join(cells) + " | " + "; ".join(notes) + " |")
    print(
        f"\ntargets met: {sum(verdicts)} of {len(verdicts)} comparisons "
        "(<= 2x OpenCV; >= 5x faster than PyTorch and scipy.ndimage)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "size": [width, height],
                    "repeat": args.repeat,
                    "cores": cores,
                    "cpu": cpu_model(),
                    "native": bool(native()),
                    "peers": labels,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
