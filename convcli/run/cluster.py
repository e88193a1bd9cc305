"""Image sets on a Dask cluster: ``--scheduler ADDRESS`` or ``--scheduler local``.

Each image is one Dask task, running :func:`convcli.run.process.process` on a
worker, so a worker does exactly what a local worker process does: the same
output bytes, the same atomic write (a temporary file in the target folder,
renamed over the target), the same per-image errors as ``failed`` outcomes.
The client side (skip/overwrite decisions, the ordered report, the progress
bar, the summary, the exit code) stays in :func:`convcli.run.batch.run`;
:func:`run_on_cluster` only replaces the local process pool and feeds
``report.add`` as futures complete.

Dask is an optional extra (``pip install 'convcli[dask]'``): nothing here
imports it at module level, and nothing else in convcli imports this module
unless ``--scheduler`` is given.

Inputs and outputs must be paths every worker can reach (a shared file
system).  A relative path is taken relative to the client's working folder:
a worker whose working folder differs gets the absolute path, and the paths
in its report are turned back into the ones the user typed.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..errors import ConvcliError, describe
from ..io.images import remove_temporaries
from ..signals import Terminated
from ..system import usable_cores
from .chunked import SchedulerLost, check_connected, process_chunked, wants_chunked
from .process import process
from .tasks import STDIN, STDOUT, Outcome, failed

LOCAL = "local"
RETRIES = 2  # a task that raises is run up to 3 times; a lost worker's task is rescheduled too
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler, unless $CONVCLI_SCHEDULER_TIMEOUT says otherwise
TIMEOUT_ENV = "CONVCLI_SCHEDULER_TIMEOUT"


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: ``$CONVCLI_SCHEDULER_TIMEOUT``, else CONNECT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return CONNECT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ConvcliError(f"${TIMEOUT_ENV}: expected seconds between 0 and 3600, got {text!r}")
    return seconds


MISSING_EXTRA = "--scheduler needs the dask extra: pip install 'convcli[dask]'"


def import_distributed():
    """The ``distributed`` module, or a ConvcliError naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise ConvcliError(MISSING_EXTRA) from None
    return distributed


def check_tasks(tasks) -> None:
    """Refuse what a cluster cannot do: standard input or output."""
    for task in tasks:
        if task.input == STDIN:
            raise ConvcliError(
                "--scheduler: standard input cannot be sent to a cluster; "
                "name image files every worker can read"
            )
        if task.output == STDOUT:
            raise ConvcliError(
                "--scheduler: -o - (standard output) cannot be written by a "
                "cluster; name an output file or folder"
            )


def connect(scheduler: str, *, workers: int | None = None, timeout: float | None = None):
    """A ``(client, cluster or None)`` pair for ``--scheduler``; the caller closes both.

    ``"local"`` starts a LocalCluster on this machine (one worker in this process with
    ``workers`` threads, bound to 127.0.0.1, no dashboard); anything else is
    the address of a running ``dask scheduler`` (``tcp://10.0.0.5:8786``).
    """
    distributed = import_distributed()
    timeout = connect_timeout() if timeout is None else timeout
    cluster = None
    if scheduler == LOCAL:
        import warnings

        try:
            with warnings.catch_warnings():
                # The scheduler's small HTTP server (health checks; no dashboard) moves off a
                # busy port 8787 by itself, on 127.0.0.1 like everything else here.
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                # One worker in this process, a thread per image or block: it starts in about
                # 0.1 s where worker processes take 1-2 s (and 6 s with their imports), and the
                # engine's numpy work releases the GIL (README, "Scaling out").
                cluster = distributed.LocalCluster(
                    n_workers=1,
                    threads_per_worker=max(1, workers or usable_cores()),
                    processes=False,
                    protocol="tcp://",
                    host="127.0.0.1",
                    dashboard_address=None,
                )
        except Exception as exc:  # noqa: BLE001  (ports, spawn failures: many kinds)
            raise ConvcliError(
                f"--scheduler local: cannot start a local Dask cluster ({describe(exc)})"
            ) from None
        address = cluster
    else:
        address = scheduler
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise ConvcliError(
            f"--scheduler: cannot reach the Dask scheduler at {scheduler!r} ({describe(exc)})"
        ) from None
    return client, cluster


def run_on_cluster(
    op,
    pending,
    opts,
    scheduler: str,
    outcomes: list,
    report,
    *,
    workers: int | None = None,
    timeout: float | None = None,
) -> list:
    """Process ``pending`` tasks on a Dask cluster; returns (and appends to ``outcomes``) their outcomes.

    Shaped like ``runner._run_pool``: every outcome goes to ``outcomes`` and
    ``report.add`` as its future completes, so the ordered output, progress bar
    and summary stay the runner's.  Each task is submitted with
    ``retries=2, pure=False``; one that still raises (not a bad image, which
    :func:`process` reports as ``failed``, but a bug or a worker lost three
    times) becomes a ``failed`` outcome.  ``--fail-fast`` and Ctrl-C cancel the
    futures that have not finished; images already running on a worker may
    still complete their (atomic) write, unreported, and a rerun skips them.
    ``workers`` sizes ``--scheduler local`` (default: the cores, at most the
    number of images).
    """
    check_tasks(pending)
    if not pending:
        return []
    import logging

    cwd = os.getcwd()
    quiet = _Quiet(logging.getLogger("distributed"))
    count = workers or opts.jobs or usable_cores()
    added: list = []
    started = time.time()
    huge = [task for task in pending if _goes_in_chunks(op, task, opts)]
    whole = [task for task in pending if task not in huge]
    with quiet:
        # --scheduler local: a thread per image, or every core for the blocks of a huge image
        threads = count if huge else min(count, len(pending))
        client, cluster = connect(scheduler, workers=threads, timeout=timeout)
        _show_dashboard(client, opts)
        distributed = import_distributed()
        futures = {}

        def record(outcome):
            outcomes.append(outcome)
            added.append(outcome)
            report.add(outcome)

        try:
            for task in whole:
                future = client.submit(
                    process_on_worker,
                    op,
                    task,
                    opts,
                    cwd,
                    retries=RETRIES,
                    pure=False,
                    key=f"convcli-{task.index}-{os.urandom(4).hex()}",
                )
                futures[future] = task
            stop = False
            for task in huge:  # one image at a time, its blocks over every worker
                check_connected(client)
                outcome = process_chunked(op, task, opts, client=client)
                check_connected(client)
                record(outcome)
                if outcome.status == "failed" and opts.fail_fast:
                    stop = True
                    break
            if not stop:
                for future in distributed.as_completed(futures, loop=client.loop):
                    if future.status == "cancelled":
                        check_connected(client, wait=2.0)
                    outcome = _outcome(future, futures[future])
                    record(outcome)
                    if outcome.status == "failed" and opts.fail_fast:
                        break
        except (KeyboardInterrupt, Terminated):  # Ctrl-C, SIGTERM, SIGHUP
            _stop(client, futures, added, outcomes, report)
            _close(client, cluster)
            # A local cluster's workers are gone now; on a remote one a cancelled image may still
            # be running, and loses its temporary file (its write fails; a rerun does it again).
            _sweep_temporaries(pending)
            raise
        except SchedulerLost:
            _report_written(pending, added, started, record)
            _close(client, cluster)
            _sweep_temporaries(pending)
            raise
        cancelled = _stop(client, futures, added, outcomes, report)
        _close(client, cluster)
        if not cancelled:  # every attempt is over: what a killed worker left is garbage
            _sweep_temporaries(pending)
    return added


def _report_written(pending, added, started: float, record) -> None:
    """After the scheduler is lost: report as written the images whose output was renamed into
    place during this run (a worker finished them; its answer never came back)."""
    reported = {outcome.task.index for outcome in added}
    for task in pending:
        if task.index in reported:
            continue
        try:
            written = os.stat(task.output).st_mtime >= started - 1.0
        except OSError:
            written = False
        if written:
            record(
                Outcome(
                    task,
                    "done",
                    {"input": task.input, "output": task.output},
                    f"{task.input}: wrote {task.output}",
                )
            )


def _goes_in_chunks(op, task, opts) -> bool:
    """Whether this image goes in chunks, its blocks spread over the cluster (decided here, on
    the client, which reads the header); a question the header cannot answer goes to a worker,
    which reports it."""
    try:
        return wants_chunked(op, task, opts)
    except ConvcliError:
        return False


def _show_dashboard(client, opts) -> None:
    """The scheduler's dashboard link on standard error (not with -q or --json), when it serves
    one: a scheduler without bokeh, or started with ``--no-dashboard``, answers 404 there."""
    if opts.quiet or opts.json:
        return
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return
        link = client.dashboard_link
        import urllib.request

        with urllib.request.urlopen(link, timeout=1.0) as answer:
            served = answer.status == 200
    except Exception:  # noqa: BLE001  (no dashboard served, or not reachable from here)
        return
    if served:
        print(f"Dask dashboard: {link}", file=sys.stderr)


def process_on_worker(op, task, opts, cwd: str):
    """Runs on a worker: :func:`convcli.run.process.process` with the client's relative paths resolved."""
    if os.getcwd() == cwd or (os.path.isabs(task.input) and os.path.isabs(task.output)):
        return process(op, task, opts)
    local = replace(task, input=os.path.join(cwd, task.input), output=os.path.join(cwd, task.output))
    outcome = process(op, local, opts)
    swaps = [
        (local.input, task.input),
        (local.output, task.output),
        (str(Path(local.output).parent), str(Path(task.output).parent)),
    ]
    outcome.task = task
    outcome.line = _swap(outcome.line, swaps)
    outcome.warning = outcome.warning and _swap(outcome.warning, swaps)
    outcome.record = {
        key: _swap(value, swaps) if isinstance(value, str) else value for key, value in outcome.record.items()
    }
    return outcome


def _swap(text: str, swaps) -> str:
    for old, new in swaps:
        text = text.replace(old, new)
    return text


def _outcome(future, task):
    """The future's Outcome, or a failed one when the task itself raised (or its workers died)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001  (anything a remote task raises comes back here)
        name = type(exc).__name__
        if name == "KilledWorker":
            message = "the Dask workers running it died repeatedly (out of memory?)"
        else:
            message = f"failed on a Dask worker ({name}: {describe(exc)})"
        return failed(task, message)


def _stop(client, futures, added, outcomes, report) -> bool:
    """Report futures that finished but were not reported yet; cancel the others.

    Returns whether any future was cancelled (its image may still be running).
    """
    reported = {o.task.index for o in added}
    unfinished = []
    for future, task in futures.items():
        if task.index in reported:
            continue
        if future.status == "finished" or future.status == "error":
            outcome = _outcome(future, task)
            outcomes.append(outcome)
            added.append(outcome)
            report.add(outcome)
        else:
            unfinished.append(future)
    if unfinished:
        try:
            client.cancel(unfinished)
        except Exception:  # noqa: BLE001  (a closing connection: nothing left to cancel)
            pass
    return bool(unfinished)


def _close(client, cluster) -> None:
    try:
        client.close(timeout=5)  # a lost scheduler would be waited for much longer
    finally:
        if cluster is not None:
            cluster.close()


def _sweep_temporaries(tasks) -> None:
    """Remove temporary files (and ``.zarr`` folders) that a killed worker left half-written for
    these outputs (:func:`convcli.io.images.remove_temporaries`).

    ``atomic_write`` writes ``.NAME.XXXXXXXX.tmp`` next to the target and renames it;
    a worker killed mid-write leaves it behind (the target is never half-written,
    and the task is retried elsewhere).  Called once the batch's futures are all
    finished or cancelled; one folder listing per output folder.
    """
    remove_temporaries(task.output for task in tasks)


class _Quiet:
    """Hold the ``distributed`` loggers at CRITICAL while convcli drives them (worker restarts
    are retried; a lost scheduler is convcli's one line, not the client's tracebacks)."""

    def __init__(self, logger):
        self.logger = logger
        self.levels: dict = {}

    def __enter__(self):
        import logging

        names = [self.logger.name] + [
            name for name in logging.Logger.manager.loggerDict if name.startswith(self.logger.name + ".")
        ]
        for name in names:
            logger = logging.getLogger(name)
            self.levels[name] = logger.level
            logger.setLevel(max(logger.level, logging.CRITICAL))
        return self

    def __exit__(self, *exc):
        import logging

        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        return False
