"""What every stage module shares: the terminal display and the Spark session of a config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sparktf.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from rich.console import Console

__all__ = ["console", "download_root", "spark_for", "step"]


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@contextmanager
def step(out: Console, what: str) -> Iterator[dict[str, str]]:
    """A spinner while ``what`` runs, then one line with what the step put in ``note``."""
    note: dict[str, str] = {}
    t0 = time.perf_counter()
    with out.status(f"{what} …"):
        yield note
    done = f": {note['done']}" if note.get("done") else ""
    out.print(f"  [green]✓[/] {what}{done} [dim]({time.perf_counter() - t0:.1f} s)[/]")


def spark_for(cfg: Config) -> SparkSession:
    """The session of ``[spark]`` (created once per process)."""
    from sparktf.spark import get_spark

    return get_spark(cfg.spark)


def download_root(cfg: Config) -> str:
    """Where registry models are downloaded for the index and batch stages."""
    return cfg.paths.local("state", "registry")
