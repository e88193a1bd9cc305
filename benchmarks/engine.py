"""Engine benchmark: convcli's library functions against OpenCV, PyTorch and scipy.ndimage.

    python benchmarks/engine.py [--repeat 5] [--json] [--size 3840x2160] [--only sobel,pool]

On a WIDTHxHEIGHT RGB float32 image (default 3840x2160), each channel filtered, it times the
workloads of issue 5 for convcli (``method="auto"``), convcli's plain path
(``method="direct"``) and the peers that are installed (OpenCV with ``cv2.setNumThreads(2)``,
PyTorch CPU with ``torch.set_num_threads(2)``, scipy.ndimage).  It installs nothing; a peer
that is not importable is reported as skipped.  Every tool runs once to warm up (that run's
result is the one checked), then ``--repeat`` times (at least 5 counted for the table the
README quotes); the table gives the medians in ms, convcli's ratio to each peer and whether
the issue's targets are met:

- at most 2x OpenCV's time;
- at least 5x faster than PyTorch CPU and than scipy.ndimage.

Each peer's result is checked against convcli's (to 1e-3 of the value scale) before it is
timed, so the table never compares different work.  convcli is timed in a child process
that imports no peer (``--same-process`` times it beside them: importing torch slowed
convcli's threaded numpy loops by up to 1.5x on the test machine); its results are still
computed here and checked.  Each tool gets the image in its native
layout, prepared outside the timing: H x W x C numpy for convcli and OpenCV, C x 1 x H x W
tensors for PyTorch (channels as the batch), one H x W plane per channel for scipy.
Where a peer has no stride (OpenCV, scipy) it computes every position and the benchmark
keeps every second one, as a user of that tool would; where it has no max pooling (OpenCV)
or no transposed convolution (OpenCV, scipy) the cell says "-"; so does convcli's plain path
on the 31x31 kernel (about 40 s a run) unless ``--all-direct``.
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

from convcli.engine.filtering import filter2d
from convcli.engine.kernels import gaussian_kernel
from convcli.engine.pooling import pool2d
from convcli.engine.transposed import conv_transpose2d

THREADS = 2
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


def convcli_runner(method):
    def make(kind, kernel, params, image):
        if kind == "filter":
            return lambda: filter2d(image, kernel, method=method, **params)
        if kind == "pool":
            return lambda: pool2d(image, 2, method=method)
        return lambda: conv_transpose2d(image, kernel, method=method, **params)

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
        if params.get("padding"):
            pad = params["padding"]
            border = cv2.BORDER_CONSTANT

            def crop(out):
                return out[:: params["stride"], :: params["stride"]]

            assert pad == kh // 2 == kw // 2
        else:
            border = cv2.BORDER_DEFAULT

            def crop(out):
                return out[
                    kh // 2 : out.shape[0] - (kh - 1 - kh // 2), kw // 2 : out.shape[1] - (kw - 1 - kw // 2)
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
        if params.get("padding"):
            s = params["stride"]
            return lambda: [ndi.correlate(p, kernel, mode="constant")[::s, ::s] for p in planes]
        return lambda: [
            ndi.correlate(p, kernel, mode="constant")[
                kh // 2 : p.shape[0] - (kh - 1 - kh // 2), kw // 2 : p.shape[1] - (kw - 1 - kw // 2)
            ]
            for p in planes
        ]

    return make, "scipy.ndimage " + scipy.__version__


def as_hwc(result, like):
    """A peer's result in convcli's H x W x C layout."""
    if isinstance(result, list):
        return np.stack(result, axis=2)
    if hasattr(result, "numpy"):
        return result.numpy()[:, 0].transpose(1, 2, 0)
    result = np.asarray(result)
    return result if result.ndim == 3 else result[:, :, None]


def ms_text(value):
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def median_ms(func, repeat):
    """Median of ``repeat`` timed runs (the correctness check before was the warm-up)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_convcli_alone(args, image, only):
    """Child mode: time convcli's tools, with no peer imported; print JSON."""
    timings = {}
    for key, _, kind, kernel, params in workloads():
        if only and key not in only:
            continue
        timings[key] = {}
        for name, method in (("convcli", "auto"), ("convcli direct", "direct")):
            if name == "convcli direct" and (
                args.no_direct or (kernel is not None and kernel.size > 100 and not args.all_direct)
            ):
                continue
            func = convcli_runner(method)(kind, kernel, params, image)
            func()  # warm up
            timings[key][name] = median_ms(func, args.repeat)
            print(f"  {key:<26} {name:<15} {timings[key][name]:9.1f} ms (alone)", file=sys.stderr)
    print(json.dumps(timings))
    return 0


def convcli_timings_in_child():
    import subprocess

    command = [sys.executable, __file__, "--convcli-timings"] + sys.argv[1:]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per tool (median)")
    parser.add_argument("--size", default="3840x2160", help="WIDTHxHEIGHT (default 3840x2160)")
    parser.add_argument("--only", default="", help="comma-separated workload keys")
    parser.add_argument("--no-direct", action="store_true", help="skip convcli's plain path")
    parser.add_argument(
        "--all-direct",
        action="store_true",
        help="time the plain path on kernels over 100 taps too (31x31: ~40 s a run)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="time convcli in this process, after the peers are imported",
    )
    parser.add_argument("--convcli-timings", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    only = {k for k in args.only.split(",") if k}
    if args.convcli_timings:
        return time_convcli_alone(args, image, only)
    # convcli is timed in a child process that imports no peer: importing torch slowed
    # convcli's two-thread numpy loops by up to 1.5x here (the Gaussian 7x7: 120 -> 181 ms).
    alone = {} if args.same_process else convcli_timings_in_child()

    tools = [("convcli", convcli_runner("auto"))]
    if not args.no_direct:
        tools.append(("convcli direct", convcli_runner("direct")))
    peers = []
    for key, factory in (("OpenCV", opencv_runner), ("PyTorch", torch_runner), ("scipy", scipy_runner)):
        try:
            make, label = factory()
        except ImportError:
            print(f"{key}: skipped (not installed)")
            continue
        tools.append((key, make))
        peers.append((key, label))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{width}x{height} RGB float32, median of {args.repeat} runs (after 1 warm-up), "
        f"{cores} cores ({cpu_model()}), numpy {np.__version__}; "
        + ", ".join(label for _, label in peers)
        + (
            "; convcli timed in this process"
            if args.same_process
            else "; convcli timed in a child process that imports no peer"
        )
    )

    results = []
    for key, title, kind, kernel, params in workloads():
        if only and key not in only:
            continue
        row = {"workload": key, "title": title, "ms": {}, "checked": {}}
        reference = None
        for name, make in tools:
            func = make(kind, kernel, params, image)
            if name == "convcli direct" and kernel is not None and kernel.size > 100 and not args.all_direct:
                func = None  # minutes per workload; --all-direct times it
            if func is None:
                row["ms"][name] = None
                continue
            result = as_hwc(func(), image)
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
            if name.startswith("convcli") and not args.same_process:
                row["ms"][name] = alone[key][name]
            else:
                row["ms"][name] = median_ms(func, args.repeat)
            print(f"  {title:<26} {name:<15} {row['ms'][name]:9.1f} ms", file=sys.stderr)
        results.append(row)

    names = [name for name, _ in tools]
    print()
    header = "| workload | " + " | ".join(f"{n} ms" for n in names) + " | targets |"
    print(header)
    print("|" + "---|" * (len(names) + 2))
    verdicts = []
    for row in results:
        ms = row["ms"]
        ours = ms["convcli"]
        cells = []
        for name in names:
            value = ms.get(name)
            cells.append("-" if value is None else ms_text(value))
        notes = []
        cv = ms.get("OpenCV")
        if cv:
            ratio = ours / cv
            ok = ratio <= 2
            notes.append(
                f"{ratio:.1f}x OpenCV's time: "
                + (
                    "met"
                    if ok
                    else f"missed (needs <= {ms_text(2 * cv)} ms, {ours / (2 * cv):.1f}x too slow)"
                )
            )
            verdicts.append(ok)
        for peer in ("PyTorch", "scipy"):
            other = ms.get(peer)
            if other:
                speedup = other / ours
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
    met = sum(verdicts)
    print(
        f"\ntargets met: {met} of {len(verdicts)} comparisons "
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
                    "peers": [label for _, label in peers],
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
