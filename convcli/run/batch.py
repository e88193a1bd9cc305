"""Running one operation over one or many images: the local executors and the exit code.

The CLI builds an operation object (:mod:`convcli.ops`) and a
:class:`~convcli.run.tasks.RunOptions` and hands both to :func:`run`, which
plans every output, skips or plans what needs no work, processes the rest on
this process, a pool of worker processes or a Dask cluster, and reports in
input order.
"""

from __future__ import annotations

import os
import time

from ..errors import ConvcliError
from ..io.images import remove_temporaries
from ..ops.base import Operation
from ..signals import (
    Terminated,
    blocked,
    deferred,
    exit_code,
    image_scope,
    interruptible,
    start_worker,
    stop_in,
)
from ..system import usable_cores
from .chunked import SchedulerLost
from .plan import expand_inputs, plan_outputs, skip_or_plan
from .process import process
from .report import Reporter
from .tasks import STDOUT, Outcome, RunOptions, Task

ABORT_GRACE = 2.0  # seconds the workers have to drop their images before they are killed


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

    interrupted: BaseException | None = None
    lost: SchedulerLost | None = None
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
                    with image_scope():  # a signal after the write waits for the report
                        outcome = process(op, task, opts)
                        outcomes.append(outcome)
                        report.add(outcome)
                    if outcome.status == "failed" and opts.fail_fast:
                        break
            else:
                _run_pool(op, pending, opts, jobs, outcomes, report)
        except (KeyboardInterrupt, Terminated) as exc:  # Ctrl-C, SIGTERM, SIGHUP
            interrupted = exc
        except SchedulerLost as exc:  # the images written are reported; then its one line
            lost = exc
        except Exception as exc:
            interrupted = stop_in(exc)  # one Python wrapped (a RuntimeError while a class is made)
            if interrupted is None:
                raise
        report.flush_all()

    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "planned")}
    if batch or interrupted is not None:
        report.summary(counts, time.monotonic() - started, interrupted is not None, len(tasks))
    if lost is not None:
        raise lost
    if interrupted is not None:
        return exit_code(interrupted)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
    if not batch and counts["failed"]:
        # A single image: its error is a usage error, as for any bad option.
        first = next(o for o in outcomes if o.status == "failed")
        raise ConvcliError(first.record["error"], first.exit_code)
    return 1 if counts["failed"] else 0


def _run_pool(op, pending, opts, jobs, outcomes, report) -> None:
    """Run ``pending`` on ``jobs`` worker processes, reporting as images finish.

    Ctrl-C: the images in hand finish whole and are reported, nothing else starts; a second
    Ctrl-C stops them at once (as SIGTERM does).  SIGTERM or SIGHUP (to this process, or to its
    whole process group): the workers drop the images in hand, each removing its temporary
    file, and the images already written are reported.  See :mod:`convcli.signals`.
    """
    import concurrent.futures as cf

    executor, futures = None, {}
    try:
        with deferred():  # a signal while the pool starts waits until it has started
            executor = _start_pool(jobs)
            with blocked():  # (for the spawn method, which starts the workers as tasks come)
                for task in pending:
                    futures[executor.submit(_work, op, task, opts)] = task
        for future in cf.as_completed(futures):
            with deferred():  # recorded and reported together
                outcome = future.result()
                outcomes.append(outcome)
                report.add(outcome)
            if outcome.status == "failed" and opts.fail_fast:
                break
    except BaseException as exc:
        if executor is not None:
            if isinstance(stop_in(exc), KeyboardInterrupt):
                _finish_running(executor, futures, outcomes, report, stopping=True)
            else:  # SIGTERM, SIGHUP, or an error here: the workers stop now too
                _abort(executor, futures, outcomes, report)
        raise
    _finish_running(executor, futures, outcomes, report, stopping=False)


def _start_pool(jobs: int):
    """A process pool of ``jobs`` workers whose signals are handled (:func:`_work`)."""
    import concurrent.futures as cf
    import multiprocessing

    # Not plain fork: the progress bar runs a thread, and forking a threaded
    # process can deadlock.  The fork server preloads numpy and Pillow once.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["convcli.run.batch", "numpy", "PIL.Image"])
    else:
        context = multiprocessing.get_context("spawn")
    # The helper processes are started now, with the stop signals blocked, and inherit that: a
    # signal to the whole process group (Ctrl-C, kill -TERM -PGID) cannot catch one while Python
    # starts or the fork server imports numpy, and the fork server keeps them blocked for good
    # (it ends when this process does).  Workers, forked from it, unblock them once their
    # handlers are in place (start_worker).  The resource tracker first: it unblocks SIGINT and
    # SIGTERM in this thread after starting.
    if os.name == "posix":
        from multiprocessing import resource_tracker

        with blocked():
            resource_tracker.ensure_running()
    with blocked():
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()
        return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=start_worker)


def _work(op, task, opts) -> Outcome:
    """In a worker: :func:`convcli.run.process.process` within an image scope, so that SIGTERM or
    SIGHUP drops the image unless it is written already (then it goes back to be reported)."""
    with image_scope(raise_at_end=False):
        try:
            return process(op, task, opts)
        except Exception as exc:
            stop = stop_in(exc)  # a Terminated Python wrapped (importing dask, say) goes back as one
            if stop is None:
                raise
            raise stop from None


def _finish_running(executor, futures, outcomes, report, *, stopping: bool) -> None:
    """Cancel what has not started; let running images finish whole, and record them.

    A second Ctrl-C, SIGTERM or SIGHUP while they run stops them now (:func:`_abort`).
    """
    import concurrent.futures as cf

    running = [future for future in futures if not future.cancel()]  # cancels those not taken
    try:
        with interruptible():
            cf.wait(running)
            executor.shutdown(wait=True, cancel_futures=True)
    except (KeyboardInterrupt, Terminated):
        _abort(executor, futures, outcomes, report)
        raise
    _record_finished(futures, outcomes, report, stopping=stopping)


def _abort(executor, futures, outcomes, report) -> None:
    """Stop now: cancel what has not started, tell each worker to drop its image (SIGTERM: it
    removes its temporary file), and record the images written before.  A worker that has not
    stopped after ABORT_GRACE seconds is killed, and what it left beside its output removed."""
    import concurrent.futures as cf

    running = [future for future in futures if not future.cancel()]
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for worker in processes:
        try:
            worker.terminate()  # SIGTERM; a worker's own handler drops its image
        except (OSError, ValueError):
            pass  # gone already
    _, stuck = cf.wait(running, timeout=ABORT_GRACE)
    if stuck:
        for worker in processes:
            try:
                worker.kill()
            except (OSError, ValueError):
                pass
    executor.shutdown(wait=True, cancel_futures=True)
    if stuck:
        remove_temporaries(futures[future].output for future in stuck)
    _record_finished(futures, outcomes, report, stopping=True)


def _record_finished(futures, outcomes, report, *, stopping: bool) -> None:
    """Report the images that finished and were not reported yet.  Once the batch is stopping,
    an image stopped midway (or lost with its worker) is not reported: nothing of it was written."""
    recorded = {o.task.index for o in outcomes}
    for future, task in futures.items():
        if task.index in recorded or future.cancelled() or not future.done():
            continue
        if future.exception() is not None and stopping:
            continue
        outcome = future.result()
        outcomes.append(outcome)
        report.add(outcome)
