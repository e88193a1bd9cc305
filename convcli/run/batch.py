"""Running one operation over one or many images: the local executors and the exit code.

The CLI builds an operation object (:mod:`convcli.ops`) and a
:class:`~convcli.run.tasks.RunOptions` and hands both to :func:`run`, which
plans every output, skips or plans what needs no work, processes the rest on
this process, a pool of worker processes or a Dask cluster, and reports in
input order.
"""

from __future__ import annotations

import time

from ..errors import ConvcliError
from ..ops.base import Operation
from ..system import usable_cores
from .plan import expand_inputs, plan_outputs, skip_or_plan
from .process import process
from .report import Reporter
from .tasks import STDOUT, Outcome, RunOptions, Task


def _ignore_sigint() -> None:
    import signal

    # Workers finish the image they hold; the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(op: Operation, inputs: list[str], opts: RunOptions) -> int:
    """Process every input; report in input order; return the exit code."""
    paths, batch = expand_inputs(inputs, opts.recursive)
    tasks = plan_outputs(paths, inputs, batch, op, opts)
    report = Reporter(opts, to_stderr=opts.output == STDOUT, batch=batch, total=len(tasks))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    pending: list[Task] = []
    for task in tasks:
        decided = skip_or_plan(op, task, opts)
        if decided is None:
            pending.append(task)
        else:
            outcomes.append(decided)

    interrupted = False
    jobs = max(1, min(opts.jobs or usable_cores(), len(pending)))
    with report:
        for outcome in sorted(outcomes, key=lambda o: o.task.index):
            report.add(outcome)
        try:
            if opts.scheduler and pending:
                from .cluster import run_on_cluster

                run_on_cluster(op, pending, opts, opts.scheduler, outcomes, report)
            elif jobs == 1 or not batch:
                for task in pending:
                    outcome = process(op, task, opts)
                    outcomes.append(outcome)
                    report.add(outcome)
                    if outcome.status == "failed" and opts.fail_fast:
                        break
            else:
                _run_pool(op, pending, opts, jobs, outcomes, report)
        except KeyboardInterrupt:
            interrupted = True
        report.flush_all()

    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "planned")}
    if batch or interrupted:
        report.summary(counts, time.monotonic() - started, interrupted, len(tasks))
    if interrupted:
        return 130
    if not batch and counts["failed"]:
        # A single image: its error is a usage error, as for any bad option.
        first = next(o for o in outcomes if o.status == "failed")
        raise ConvcliError(first.record["error"])
    return 1 if counts["failed"] else 0


def _run_pool(op, pending, opts, jobs, outcomes, report) -> None:
    import concurrent.futures as cf
    import multiprocessing

    # Not plain fork: the progress bar runs a thread, and forking a threaded
    # process can deadlock.  The fork server preloads numpy and Pillow once.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["convcli.run.process", "numpy", "PIL.Image"])
    else:
        context = multiprocessing.get_context("spawn")
    executor = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_ignore_sigint)
    futures = {}
    try:
        for task in pending:
            futures[executor.submit(process, op, task, opts)] = task
        for future in cf.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            report.add(outcome)
            if outcome.status == "failed" and opts.fail_fast:
                break
    except KeyboardInterrupt:
        _finish_running(executor, futures, outcomes, report)
        raise
    _finish_running(executor, futures, outcomes, report)


def _finish_running(executor, futures, outcomes, report) -> None:
    """Cancel what has not started; let running images finish whole, and record them."""
    executor.shutdown(wait=True, cancel_futures=True)
    done_tasks = {o.task.index for o in outcomes}
    for future, task in futures.items():
        if task.index in done_tasks or future.cancelled() or not future.done():
            continue
        outcome = future.result()
        outcomes.append(outcome)
        report.add(outcome)
