"""Cross-check convcli against the real PyTorch, where it is installed.

    python tools/against_torch.py [--cases 3000] [--seed 1]

The tests hold convcli to explicit-loop oracles written in the tests, so they run without
torch. This script asks torch itself: for random images, kernels and parameters (strides,
paddings and ``"same"``, dilations, padding modes, ceil_mode, count_include_pad, output
padding), it runs ``filter2d``, ``pool2d`` and ``conv_transpose2d`` and the matching
``F.conv2d`` (after ``F.pad`` for the non-zero modes), ``F.max_pool2d`` / ``F.avg_pool2d`` /
``-F.max_pool2d(-x)`` and ``F.conv_transpose2d``, one image at a time, and checks that

- both accept the same parameters (convcli raises ConvcliError exactly where torch raises);
- the output sizes are equal, and ``convcli shape`` predicts them;
- the values agree to 1e-4 (infinities and NaN in the same places).

Then, on random stacks of conv, pool and transposed conv layers (``--fields``, with dilation,
padding, ceil_mode and output padding), it builds the network with all-ones weights in torch,
takes the gradients of the output units by autograd, and checks the input positions with a
non-zero gradient against the receptive fields ``convcli shape`` reports: on stacks one row
high, the widest span over every output unit; on two-dimensional stacks (one in four, each axis
with its own values), each middle unit's first and last row and column, the set being a
rectangle. Pools are ``avg_pool2d``, whose gradient reaches its whole window, or for a dilated
pool, which avg_pool2d does not take, a conv of ones padded to max_pool2d's output size.

It prints the number of cases compared and refused by both, the largest difference, and every
disagreement; the exit code is 1 if there was one. torch is not a dependency of convcli: install
it beside convcli to run this (``pip install torch``).
"""

from __future__ import annotations

import argparse
import random
import sys
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3000, help="random cases per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fields", type=int, default=300, help="random stacks for the receptive fields")
    args = parser.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch is not installed: nothing to compare against (pip install torch)")
        return 2
    import numpy as np

    from convcli import conv_transpose2d, filter2d, pool2d
    from convcli.errors import ConvcliError
    from convcli.geometry.receptive import parse_layer, run_stack

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Using padding='same'")  # torch's note on a copy
    rng = np.random.default_rng(args.seed)
    pick = random.Random(args.seed)
    failures: list[str] = []
    counts = {
        op: {"compared": 0, "refused by both": 0, "worst": 0.0} for op in ("filter", "pool", "upsample")
    }

    def run_torch(call):
        try:
            with torch.no_grad():
                result = call()
        except RuntimeError:
            return None
        return None if result.numel() == 0 else result[0, 0].numpy()  # torch may return 0-size

    def run_convcli(call):
        try:
            return call()
        except ConvcliError:
            return None

    def difference(a, b) -> float:
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if same.all():
            return 0.0
        return float(np.nan_to_num(np.abs(a - b)[~same], nan=np.inf).max())

    def predicted(size_hw, layer_spec):
        try:
            [result] = run_stack(size_hw, [parse_layer(layer_spec, 1)])
        except ConvcliError:
            return None
        return result.height.size, result.width.size

    def compare(op, what, ours, theirs, layer_spec, size_hw):
        entry = counts[op]
        if (ours is None) != (theirs is None):
            failures.append(
                f"{op} {what}: convcli {'refuses' if ours is None else 'accepts'}, "
                f"torch {'refuses' if theirs is None else 'accepts'}"
            )
            return
        if ours is None:
            entry["refused by both"] += 1
            return
        entry["compared"] += 1
        if ours.shape != theirs.shape:
            failures.append(f"{op} {what}: size {ours.shape} != torch {theirs.shape}")
            return
        expected = predicted(size_hw, layer_spec)
        if expected != ours.shape:
            failures.append(f"{op} {what}: shape {layer_spec} predicts {expected}, got {ours.shape}")
        gap = difference(ours, theirs)
        entry["worst"] = max(entry["worst"], gap)
        if gap > 1e-4:
            failures.append(f"{op} {what}: values differ by {gap:g}")

    def pair(low, high):
        return pick.randint(low, high), pick.randint(low, high)

    def spec(value):
        return f"{value[1]}x{value[0]}"  # (height, width) -> WIDTHxHEIGHT

    for _ in range(args.cases):
        h, w = pair(1, 24)
        x = rng.standard_normal((h, w)).astype(np.float32)
        tx = torch.from_numpy(x)[None, None]
        kernel_hw = pair(1, 6)
        k = rng.standard_normal(kernel_hw).astype(np.float32)
        tk = torch.from_numpy(k)[None, None]
        stride, dilation = pair(1, 3), pair(1, 3)

        # filter: cross-correlation, every padding mode, symmetric padding
        padding = pair(0, 3)
        pad_mode = pick.choice(["zeros", "reflect", "replicate", "circular"])
        if pad_mode == "zeros":
            theirs = run_torch(lambda: F.conv2d(tx, tk, stride=stride, padding=padding, dilation=dilation))
        else:
            sides = (padding[1], padding[1], padding[0], padding[0])
            theirs = run_torch(
                lambda: F.conv2d(F.pad(tx, sides, mode=pad_mode), tk, stride=stride, dilation=dilation)
            )
        ours = run_convcli(
            lambda: filter2d(x, k, stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode)
        )
        layer = f"conv:k={spec(kernel_hw)},s={spec(stride)},p={spec(padding)},d={spec(dilation)}"
        compare("filter", f"{h}x{w} {layer} {pad_mode}", ours, theirs, layer, (h, w))

        # filter: padding="same" (stride 1; the extra pixel of an even kernel bottom/right)
        theirs = run_torch(lambda: F.conv2d(tx, tk, padding="same", dilation=dilation))
        ours = run_convcli(lambda: filter2d(x, k, padding="same", dilation=dilation))
        layer = f"conv:k={spec(kernel_hw)},p=same,d={spec(dilation)}"
        compare("filter", f"{h}x{w} {layer}", ours, theirs, layer, (h, w))

        # pool: max, mean, min; ceil_mode; count_include_pad; dilation for max and min
        op = pick.choice(["max", "mean", "min"])
        window = pair(1, 5)
        pool_padding = pair(0, 3)
        ceil_mode, include = pick.random() < 0.5, pick.random() < 0.5
        pool_dilation = (1, 1) if op == "mean" else dilation
        if op == "mean":
            theirs = run_torch(
                lambda: F.avg_pool2d(
                    tx, window, stride, pool_padding, ceil_mode=ceil_mode, count_include_pad=include
                )
            )
        else:
            sign = 1 if op == "max" else -1
            theirs = run_torch(
                lambda: (
                    sign
                    * F.max_pool2d(
                        sign * tx, window, stride, pool_padding, pool_dilation, ceil_mode=ceil_mode
                    )
                )
            )
        ours = run_convcli(
            lambda: pool2d(
                x,
                window,
                stride=stride,
                padding=pool_padding,
                dilation=pool_dilation,
                op=op,
                ceil_mode=ceil_mode,
                count_include_pad=include,
            )
        )
        layer = f"pool:k={spec(window)},s={spec(stride)},p={spec(pool_padding)},d={spec(pool_dilation)}" + (
            ",ceil" if ceil_mode else ""
        )
        compare("pool", f"{h}x{w} {layer} {op} count_include_pad={include}", ours, theirs, layer, (h, w))

        # upsample: transposed convolution with output padding
        t_padding, output_padding = pair(0, 2), pair(0, 2)
        theirs = run_torch(
            lambda: F.conv_transpose2d(
                tx, tk, stride=stride, padding=t_padding, output_padding=output_padding, dilation=dilation
            )
        )
        ours = run_convcli(
            lambda: conv_transpose2d(
                x, k, stride=stride, padding=t_padding, output_padding=output_padding, dilation=dilation
            )
        )
        layer = (
            f"tconv:k={spec(kernel_hw)},s={spec(stride)},p={spec(t_padding)},"
            f"op={spec(output_padding)},d={spec(dilation)}"
        )
        compare("upsample", f"{h}x{w} {layer}", ours, theirs, layer, (h, w))

    print(f"torch {torch.__version__}, {args.cases} random cases per operation, seed {args.seed}")
    for op, entry in counts.items():
        print(
            f"{op:9} compared {entry['compared']:5}, "
            f"refused by both {entry['refused by both']:5}, "
            f"largest difference {entry['worst']:.3g}"
        )
    for line in failures[:50]:
        print("DISAGREE", line)
    if len(failures) > 50:
        print(f"... and {len(failures) - 50} more")
    fields_failures = check_receptive_fields(args.fields, args.seed)
    print("receptive fields: all agree" if not fields_failures else f"{fields_failures} disagreements")
    print("all agree" if not failures else f"{len(failures)} disagreements")
    return 1 if failures or fields_failures else 0


def random_stack(pick: random.Random, two_d: bool) -> list[tuple]:
    """(op, kernel, stride, padding, dilation, extra) layers, each value a (height, width) pair
    (height 1 and neutral unless ``two_d``); extra is ceil_mode (one bool) for a pool and the
    output padding for a transposed conv."""
    layers = []
    for _ in range(pick.randint(1, 5)):
        op = pick.choice(["conv", "conv", "pool", "tconv"])
        axes = []
        for _axis in range(2 if two_d else 1):
            k, s, d = pick.randint(1, 5), pick.randint(1, 3), pick.randint(1, 3)
            if op == "conv":
                axes.append((k, s, pick.randint(0, 3), d, 0))
            elif op == "pool":
                axes.append((k, s, pick.randint(0, k // 2), pick.choice([1, 1, d]), 0))
            else:
                axes.append((k, s, pick.randint(0, 2), d, pick.randint(0, max(s, d) - 1)))
        if not two_d:
            axes.insert(0, (1, 1, 0, 1, 0))
        k, s, p, d, extra = (tuple(pair) for pair in zip(*axes))
        if op == "pool":
            extra = pick.random() < 0.5
        layers.append((op, k, s, p, d, extra))
    return layers


def stack_spec(layer) -> str:
    op, k, s, p, d, extra = layer

    def wxh(pair):
        return f"{pair[1]}x{pair[0]}"

    text = f"{op}:k={wxh(k)},s={wxh(s)},p={wxh(p)},d={wxh(d)}"
    if op == "pool" and extra:
        text += ",ceil"
    if op == "tconv":
        text += f",op={wxh(extra)}"
    return text


def safe_length(layers, axis: int, units: int = 1) -> int:
    """An input long enough along ``axis`` that ``units`` consecutive units of every phase in its
    middle are clear of the borders: a crude bound of any field (each layer's window and padding
    times the strides before it), twice, plus the product of the strides per unit."""
    bound, scale, strides = 0, 1, 1
    for op, k, s, p, d, _ in layers:
        bound += (d[axis] * (k[axis] - 1) + 2 * p[axis] + 2) * scale
        scale *= 1 if op == "tconv" else s[axis]
        strides *= s[axis]
    return 2 * bound + 2 * units * strides + 8


MAX_ELEMENTS = 2_000_000  # per layer of a receptive-field stack: the autograd graph holds them all


def check_receptive_fields(cases: int, seed: int) -> int:
    """Random stacks: convcli's receptive fields against autograd on all-ones weights. One in
    four stacks is two-dimensional (each axis its own values), checked unit by unit on units in
    the middle (first and last row and column of each unit's non-zero gradient, which must be a
    rectangle's rows times columns); the others are one row high, checked on every output unit
    (the widest span, as ``shape`` reports it)."""
    import torch
    import torch.nn.functional as F

    from convcli.errors import ConvcliError
    from convcli.geometry.receptive import parse_layer, run_stack

    pick = random.Random(seed + 1)
    counts = {"1-D": 0, "2-D": 0, "refused by both": 0, "skipped, too large": 0}
    failures = 0

    def forward(x, layers):
        for op, k, s, p, d, extra in layers:
            ones = torch.ones((1, 1, *k), dtype=x.dtype)
            if op == "conv":
                x = F.conv2d(x, ones, stride=s, padding=p, dilation=d)
            elif op == "tconv":
                x = F.conv_transpose2d(x, ones, stride=s, padding=p, output_padding=extra, dilation=d)
            elif d == (1, 1):
                x = F.avg_pool2d(x, k, s, p, ceil_mode=extra, count_include_pad=True)
            else:  # avg_pool2d takes no dilation: a conv of ones over max_pool2d's windows
                with torch.no_grad():
                    size = F.max_pool2d(x, k, s, p, d, ceil_mode=extra).shape[-2:]
                after = [
                    max(0, (size[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - x.shape[2 + i] - p[i])
                    for i in (0, 1)
                ]
                x = F.conv2d(F.pad(x, (p[1], after[1], p[0], after[0])), ones, stride=s, dilation=d)
                x = x[..., : size[0], : size[1]]
        return x

    for case in range(cases):
        two_d = case % 4 == 3
        layers = random_stack(pick, two_d)
        specs = " ".join(stack_spec(layer) for layer in layers)
        size = (
            (safe_length(layers, 0, 6), safe_length(layers, 1, 6)) if two_d else (1, safe_length(layers, 1))
        )
        try:
            ours = run_stack(size, [parse_layer(stack_spec(layer), i) for i, layer in enumerate(layers, 1)])
        except ConvcliError:
            ours = None
        if ours and max(r.output_size[0] * r.output_size[1] for r in ours) > MAX_ELEMENTS:
            counts["skipped, too large"] += 1  # several strided tconvs on the long input it needs
            continue
        x = torch.ones((1, 1, *size), dtype=torch.float64, requires_grad=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = forward(x, layers)[0, 0]
        except RuntimeError:
            out = None
        if (ours is None) != (out is None) or (ours and ours[-1].output_size != tuple(out.shape)):
            failures += 1
            print(
                f"DISAGREE fields {size} {specs}: convcli {ours and ours[-1].output_size}, torch "
                f"{None if out is None else tuple(out.shape)}"
            )
            continue
        if ours is None:
            counts["refused by both"] += 1
            continue
        last = ours[-1]
        if not two_d:
            counts["1-D"] += 1
            jacobian = torch.autograd.functional.jacobian(
                lambda v: forward(v, layers).flatten(), x.detach()
            ).reshape(-1, size[1])
            widest = 0
            for row in jacobian != 0:
                hit = row.nonzero().flatten()
                if hit.numel():
                    widest = max(widest, int(hit.max() - hit.min()) + 1)
            if widest != last.width.field or not last.width.exact:
                failures += 1
                print(f"DISAGREE fields {size} {specs}: convcli {last.width.field}, gradients {widest}")
            continue
        counts["2-D"] += 1
        # the 6 x 6 units around the middle, far from the borders (see safe_length)
        rows = range(max(0, out.shape[0] // 2 - 3), min(out.shape[0], out.shape[0] // 2 + 3))
        cols = range(max(0, out.shape[1] // 2 - 3), min(out.shape[1], out.shape[1] // 2 + 3))
        for r in rows:
            for c in cols:
                [grad] = torch.autograd.grad(out[r, c], x, retain_graph=True)
                reached = grad[0, 0] != 0
                in_rows, in_cols = reached.any(1), reached.any(0)
                spans = []
                for mask in (in_rows, in_cols):
                    hit = mask.nonzero().flatten()
                    spans.append((int(hit.min()), int(hit.max())) if hit.numel() else None)
                expected = [last.height.field_of(r), last.width.field_of(c)]
                if None in expected:  # no input row, or no column: the unit reads nothing
                    expected = [None, None]
                rectangle = bool((reached == (in_rows[:, None] & in_cols[None, :])).all())
                if spans != expected or not rectangle:
                    failures += 1
                    print(
                        f"DISAGREE fields {size} {specs} unit ({r}, {c}): convcli {expected}, "
                        f"gradients {spans}{'' if rectangle else ', not a rectangle'}"
                    )
    print(
        f"receptive fields: {counts['1-D']} one-row stacks (every unit), {counts['2-D']} 2-D stacks "
        f"(36 middle units each) compared, {counts['refused by both']} refused by both, "
        f"{counts['skipped, too large']} skipped (a layer over {MAX_ELEMENTS:,} values)"
    )
    return failures


if __name__ == "__main__":
    sys.exit(main())
