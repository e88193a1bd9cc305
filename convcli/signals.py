"""Stopping on a signal: SIGTERM and SIGHUP end convcli as Ctrl-C does, and clean up as it does.

Python turns SIGINT into KeyboardInterrupt in the main thread, and every temporary file convcli
writes is removed on the way out (an ``except BaseException`` or a ``finally`` around it).
:func:`handling` makes SIGTERM and SIGHUP raise :class:`Terminated` in the same way (and SIGINT
KeyboardInterrupt, as before), so the same cleanup runs and the CLI exits with 128 + the signal's
number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.  A signal the process was started
ignoring (``nohup``, a background job) stays ignored.

While one of these exceptions is being handled (an ``except`` or ``finally`` block, a context
manager's exit, anything they call), later signals are recorded but not raised, so that the
cleanup it started is never cut short; :func:`interruptible` opens a wait that one more signal
may end even then (the batch's "finish the images in hand" after a first Ctrl-C).  Two kinds of
moment are never cut:

- :func:`deferred`: a short critical section (making a temporary file and taking its name,
  renaming a finished output into place, starting worker processes); a signal that comes
  during it is raised when it ends.
- :func:`image_scope` and :func:`committed`: once an output has been renamed into place, the
  signal waits until the image scope ends (its report), so an interrupted batch reports exactly
  the outputs it wrote.

Worker processes of the batch call :func:`start_worker`: SIGINT is ignored there (the parent
decides), and SIGTERM or SIGHUP drops the image in hand (its temporary file removed) but never
one already renamed into place; outside an image a signal only marks the worker as stopped, and
its next image raises at once.

Layer 0, standard library only: :mod:`convcli.io` marks its critical sections and renames,
:mod:`convcli.run.batch` opens the image scopes and starts the workers, the CLI installs the
handlers.  Everything here acts in the main thread only, where Python runs signal handlers.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP, as KeyboardInterrupt is by SIGINT.

    A BaseException, as KeyboardInterrupt, so that ``except Exception`` does not swallow it and
    every ``finally`` and ``except BaseException`` cleanup runs on its way out.

    >>> stop = Terminated(signal.SIGTERM)
    >>> stop.name, stop.exit_code, str(stop)
    ('SIGTERM', 143, 'interrupted (SIGTERM)')
    """

    def __init__(self, signum: int):
        super().__init__(int(signum))
        self.signum = int(signum)

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"interrupted ({self.name})"


def exit_code(exc: BaseException) -> int:
    """130 for KeyboardInterrupt (Ctrl-C), 128 + the signal's number for :class:`Terminated`."""
    return exc.exit_code if isinstance(exc, Terminated) else 130


def message(exc: BaseException) -> str:
    """``interrupted`` for Ctrl-C, ``interrupted (SIGTERM)`` for a :class:`Terminated`."""
    return str(exc) if isinstance(exc, Terminated) else "interrupted"


def stop_in(exc: BaseException | None) -> BaseException | None:
    """The KeyboardInterrupt or :class:`Terminated` that ``exc`` is, or was raised from or while
    handling (Python wraps an exception raised in some places, as a RuntimeError from
    ``__set_name__`` while a class is made); None when there is none."""
    seen = 0
    while exc is not None and seen < 100:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class _State:
    def __init__(self, *, installed: bool = False, worker: bool = False):
        self.installed = installed  # our handler is in place in this process
        self.worker = worker  # a batch worker: signals only raise inside an image
        self.interruptible = 0  # interruptible waits open
        self.holds = 0  # deferred sections open
        self.images = 0  # image scopes open
        self.committed = False  # an output was renamed into place in the open image scope
        self.pending: int | None = None  # a signal that came while held, not raised yet
        self.stopped: int | None = None  # SIGTERM or SIGHUP came (a worker takes no new image)


_state = _State()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _held() -> bool:
    s = _state
    return s.holds > 0 or (s.images > 0 and s.committed) or (s.worker and s.images == 0)


def _cleaning_up() -> bool:
    """Whether a KeyboardInterrupt or Terminated is being handled (or one the exception being
    handled came from): the cleanup it started is running."""
    return stop_in(sys.exc_info()[1]) is not None


def _exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handle(signum, frame) -> None:
    s = _state
    if signum != signal.SIGINT:
        s.stopped = signum
    if s.pending is None or s.pending == signal.SIGINT:  # SIGTERM and SIGHUP outrank Ctrl-C
        s.pending = signum
    _raise_pending()


def _raise_pending() -> None:
    """Raise the signal that waits, if nothing holds it.  SIGTERM and SIGHUP are raised again at
    each such point until one is being handled: library code that catches every exception and
    goes on (seen once, in an import) cannot make convcli forget them."""
    s = _state
    if not s.installed or _held():
        return
    signum = s.pending if s.pending is not None else s.stopped
    if signum is not None and (s.interruptible or not _cleaning_up()):
        s.pending = None
        raise _exception(signum)


def _is_default(signum: int, handler) -> bool:
    return handler == signal.SIG_DFL or (signum == signal.SIGINT and handler is signal.default_int_handler)


def install() -> dict | None:
    """Handle the stop signals in this process from now on (main thread only).  Returns the
    handlers replaced, for :func:`handling` to put back; None when it did nothing (not the main
    thread, or done already)."""
    global _state
    if not _main_thread() or _state.installed:
        return None
    replaced = {}
    for signum in STOP_SIGNALS:
        if _is_default(signum, signal.getsignal(signum)):
            replaced[signum] = signal.signal(signum, _handle)
    _state = _State(installed=True)
    return replaced


@contextmanager
def handling():
    """:func:`install` for the length of the block, then the previous handlers again."""
    global _state
    replaced = install()
    try:
        yield
    finally:
        if replaced is not None:
            for signum, handler in replaced.items():
                signal.signal(signum, handler)
            _state = _State()


def ignore_from_now() -> None:
    """The process is ending, its cleanup done: a late stop signal must not kill it halfway through
    Python's shutdown (which puts the default handlers back) and change its exit code."""
    if _main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def start_worker() -> None:
    """In a batch worker process (its pool's initializer): SIGINT ignored, SIGTERM and SIGHUP
    handled as described above, then the stop signals unblocked (workers are born with them
    blocked, see :func:`blocked`, so none comes before the handlers are in place)."""
    global _state
    if _main_thread():
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in STOP_SIGNALS:
            if signum != signal.SIGINT and _is_default(signum, signal.getsignal(signum)):
                signal.signal(signum, _handle)
        _state = _State(installed=True, worker=True)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def deferred():
    """A critical section: a stop signal that comes during it is raised when it ends (unless an
    exception is already on its way out of it)."""
    if not _main_thread():
        yield
        return
    _state.holds += 1
    try:
        yield
    finally:
        _state.holds -= 1
    _raise_pending()


def committed() -> None:
    """An output was just renamed into place (call it inside :func:`deferred`): within an image
    scope, a stop signal now waits until the scope ends, so that the output is reported first."""
    if _main_thread() and _state.images:
        _state.committed = True


@contextmanager
def image_scope(*, raise_at_end: bool = True):
    """One image, from its start to its report.  In a worker (``raise_at_end=False``) a signal
    that came after the output was written is not raised at the end: the outcome must still go
    back to the parent, and the worker's next image raises instead.  A worker already told to
    stop raises :class:`Terminated` at once."""
    if not _main_thread():
        yield
        return
    s = _state
    if s.installed and s.worker and s.stopped is not None:
        raise Terminated(s.stopped)
    s.images += 1
    try:
        yield
    finally:
        s.images -= 1
        if not s.images:
            s.committed = False
    if raise_at_end:
        _raise_pending()


@contextmanager
def interruptible():
    """A wait that one more stop signal may end, even after one was raised (the batch waiting for
    the images in hand after a first Ctrl-C: a second Ctrl-C, or SIGTERM, stops it now)."""
    if not _main_thread():
        yield
        return
    s = _state
    s.interruptible += 1
    try:
        _raise_pending()  # one that came since the first is raised now
        yield
    finally:
        s.interruptible -= 1


@contextmanager
def blocked():
    """Block the stop signals in this thread for the block: child processes started in it inherit
    the mask (across fork and exec) and start with them blocked, so a signal sent to the whole
    process group cannot catch one half-started (Python's startup, a fork server importing
    numpy).  Signals sent meanwhile wait, and are delivered when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
