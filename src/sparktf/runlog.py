"""Quiet by default: the terminal shows progress and results, the run's log file gets the rest.

A pipeline run starts a JVM, TensorFlow in the driver and in every training worker,
MLflow and Spark's Python workers. Each of them writes notices to stderr that read like
errors to a newcomer (CUDA's ``cuInit`` failure on a CPU-only machine, oneDNN notices,
tf-keras serialization warnings, Spark's ``WindowExec`` warning, MLflow's pickle
warnings). :class:`RunLog` sends all of that to ``<workdir>/logs/sparktf.log``:

* file descriptor 2 of this process (and ``sys.stderr``) point at the log file while
  the run lasts, so the JVM (started later, it inherits it), TensorFlow's C++ logging
  and Python's stderr writers all land there; the original stderr comes back when the
  run ends, in time for sparktf's own error message;
* Python's ``logging`` and ``warnings`` go to the same file;
* the training workers' streamed lines (see :func:`worker_sink`) go to the file, and
  to the terminal unless they are framework noise (:func:`is_noise`).

``--verbose`` (``RunLog(..., verbose=True)``) changes nothing: everything stays on the
terminal, as before. Why our own code: the noise comes from four runtimes (JVM,
TensorFlow C++, Python warnings, child processes); no single library's switch
reaches them all.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO

__all__ = ["RunLog", "is_noise", "worker_sink"]

# What the training workers print that is framework noise, not progress or a failure
# of ours. Matched against a worker line without its "[worker N] " prefix.
_NOISE = re.compile(
    "|".join(
        (
            r"^[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\]",  # absl C++ logging (TF, XLA, gRPC)
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\]",  # TF's older C++ log format
            r"^WARNING: All log messages before absl::InitializeLog\(\)",
            r"oneDNN custom operations are on",
            r"^To enable the following instructions: ",
            r"rebuild TensorFlow with the appropriate compiler flags",
            r"^WARNING:(absl|tensorflow|root):",
            r"^\S+\.py:\d+: \w*Warning: ",  # a Python warning ...
            r"^\s+warnings\.warn\(",  # ... and the source line Python prints under it
            r"^\s+(color_warning|return|super\(\)\.__init__)\(",
            r"Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory",
            r"^This TensorFlow binary is optimized to use available CPU instructions",
        )
    )
)
_PREFIX = re.compile(r"^\[worker \d+(, attempt \d+)?\] ")

_current: RunLog | None = None
_lock = threading.Lock()


def is_noise(line: str) -> bool:
    """Whether a worker line is framework noise (logged to the file only)."""
    return bool(_NOISE.search(_PREFIX.sub("", line, count=1)))


def worker_sink() -> Callable[[str], None]:
    """Where the training workers' lines go: the current run's log (and, unless noise,
    the terminal), or the terminal alone outside a :class:`RunLog`."""
    from sparktf.distributed.logs import print_line

    run = _current
    return run.worker_line if run is not None else print_line


class RunLog:
    """Route framework output to ``path`` for the duration of a ``with`` block.

    Args:
        path: the log file (appended to; its folder is created).
        title: what runs (``sparktf run``), for the file's section header; never the
            command line, which may hold a secret (``--set serve.auth_token=...``).
        verbose: keep everything on the terminal (and still write the log file).
    """

    def __init__(self, path: str, *, title: str, verbose: bool = False) -> None:
        self.path = path
        self.title = title
        self.verbose = verbose
        self._file: IO[str] | None = None
        self._saved_fd: int | None = None
        self._saved_stderr: IO[str] | None = None
        self._handler: logging.Handler | None = None
        self._previous: RunLog | None = None
        self._root_level: int | None = None

    def __enter__(self) -> RunLog:
        global _current
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._file.write(f"\n===== {self.title} at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
        self._handler = logging.StreamHandler(self._file)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            self._root_level = root.level
            root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        if not self.verbose:
            sys.stderr.flush()
            self._saved_fd = os.dup(2)
            os.dup2(self._file.fileno(), 2)
            # Python-level writers look up sys.stderr, which may not be fd 2 (a test's capture).
            self._saved_stderr, sys.stderr = sys.stderr, self._file
        with _lock:
            self._previous, _current = _current, self
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _current
        with _lock:
            _current = self._previous
        if self._saved_stderr is not None:
            sys.stderr = self._saved_stderr
            self._saved_stderr = None
        if self._saved_fd is not None:
            sys.stderr.flush()
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self._saved_fd = None
        logging.captureWarnings(False)
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        if self._root_level is not None:
            logging.getLogger().setLevel(self._root_level)
            self._root_level = None
        if self._file is not None:
            self._file.close()

    def worker_line(self, line: str) -> None:
        """A training worker's line: to the file, and to the terminal unless it is noise."""
        from sparktf.distributed.logs import print_line

        if self._file is not None and not self._file.closed:
            with _lock:
                self._file.write(line + "\n")
        if self.verbose or not is_noise(line):
            print_line(line)
