"""SIGTERM and SIGHUP raise :class:`~diffaug_genomics.errors.Terminated` while temporary output is
open (:func:`signals_raise`), so that a ``scancel``, a SLURM time limit or a closed terminal
removes it exactly as Ctrl-C does; a handler a caller installed (``fit``'s checkpoint-and-stop)
is left alone. Used by :mod:`diffaug_genomics.io.atomic` and the lock."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from diffaug_genomics.errors import Terminated

T = TypeVar("T")

TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                            if hasattr(signal, name))
"""Signals that remove a temporary file being written (SIGINT does already: KeyboardInterrupt)."""

_signal_lock = threading.Lock()
_signal_depth = 0
_saved_handlers: dict[int, Any] = {}


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """While any temporary output is open: SIGTERM / SIGHUP with their default action (which
    kills the process without cleanup) raise :class:`Terminated` instead. Handlers a caller
    installed are left alone. Only the main thread can install handlers; elsewhere a no-op."""
    global _signal_depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _signal_lock:
        if _signal_depth == 0:
            for sig in TERMINATING_SIGNALS:
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    _saved_handlers[sig] = signal.signal(sig, _raise_terminated)
        _signal_depth += 1
    try:
        yield
    finally:
        with _signal_lock:
            _signal_depth -= 1
            if _signal_depth == 0:
                for sig, handler in _saved_handlers.items():
                    if signal.getsignal(sig) is _raise_terminated:
                        signal.signal(sig, handler)
                _saved_handlers.clear()


def cleanup_on_signals(func: Callable[..., T]) -> Callable[..., T]:
    """Run ``func`` under :func:`signals_raise` (for writers of temporary files other than
    :func:`atomic_temp`'s, e.g. a spool of standard input, removed in a ``finally``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with signals_raise():
            return func(*args, **kwargs)

    return wrapper
