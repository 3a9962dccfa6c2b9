"""The `sparktf check` workdir check: what must exist, and what must not be in the way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparktf.checks import CheckResult, _check_workdir
from sparktf.config import load_config


def _workdir_check(workdir: Path) -> CheckResult:
    return _check_workdir(load_config(overrides=[f'workdir="{workdir}"']))


def test_a_workdir_that_is_an_existing_file_fails_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "run.txt"
    f.write_text("not a directory")
    r = _workdir_check(f)
    assert r.status == "fail"
    assert str(f) in r.detail and "is a file, not a directory" in r.detail
    assert "--workdir" in r.hint


def test_a_workdir_below_a_file_fails_naming_the_file(tmp_path: Path) -> None:
    f = tmp_path / "blocker"
    f.write_text("")
    r = _workdir_check(f / "run" / "1")
    assert r.status == "fail"
    assert f"{f / 'run' / '1'} cannot be created: {f} is a file" in r.detail


def test_a_workdir_that_is_a_special_file_fails(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = _workdir_check(fifo)
    assert r.status == "fail" and f"{fifo} is a special file, not a directory" in r.detail


@pytest.mark.parametrize("exists", [True, False])
def test_a_directory_or_a_path_to_create_passes(tmp_path: Path, exists: bool) -> None:
    d = tmp_path / "run"
    if exists:
        d.mkdir()
    r = _workdir_check(d)
    assert r.status in ("ok", "warn"), r  # warn: little disk space on this machine
    assert str(d) in r.detail
