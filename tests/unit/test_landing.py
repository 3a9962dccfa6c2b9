"""LandingWriter: durable JSON-lines files that appear whole, one per group commit, named
in write order; a failed write fails only its own callers; a closed writer says so."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from sparktf.errors import SparkTFError
from sparktf.online.landing import LandingError, LandingWriter


def read(directory: Path) -> list[list[dict[str, str]]]:
    return [
        [json.loads(line) for line in p.read_text(encoding="ascii").splitlines()]
        for p in sorted(directory.glob("*.jsonl"))
    ]


def test_each_append_is_a_whole_file_named_in_write_order(tmp_path: Path) -> None:
    directory = tmp_path / "landing" / "deep"  # made when missing
    with LandingWriter(str(directory)) as writer:
        for i in range(5):
            writer.append([{"event_id": f"e{i}", "user_id": "ü\n\u2028"}, {"event_id": f"f{i}", "user_id": None}])
        writer.append([])  # nothing to write: no file
    files = read(directory)
    assert [[r["event_id"] for r in f] for f in files] == [[f"e{i}", f"f{i}"] for i in range(5)]
    assert files[0][0]["user_id"] == "ü\n\u2028"  # escaped: one record per line
    assert not [p for p in os.listdir(directory) if p.startswith(".")]
    name = sorted(directory.glob("*.jsonl"))[0].name
    stamp, pid, seq = name.removesuffix(".jsonl").split("-")
    assert len(stamp) == 20 and pid == str(os.getpid()) and seq == "00000001"


def test_concurrent_appends_share_files_and_all_land_once(tmp_path: Path) -> None:
    writer = LandingWriter(str(tmp_path))

    def work(t: int) -> None:
        for n in range(40):
            writer.append([{"event_id": f"{t}-{n}"}])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    ids = [r["event_id"] for f in read(tmp_path) for r in f]
    assert sorted(ids) == sorted(f"{t}-{n}" for t in range(16) for n in range(40))
    assert writer.files_written == len(read(tmp_path)) < 16 * 40
    # one thread's records keep their order across files
    mine = [i for i in ids if i.startswith("3-")]
    assert mine == [f"3-{n}" for n in range(40)]


def test_a_failed_write_fails_its_callers_only_and_close_is_final(tmp_path: Path) -> None:
    directory = tmp_path / "landing"
    writer = LandingWriter(str(directory))
    writer.append([{"event_id": "before"}])
    os.rename(directory, tmp_path / "moved")  # the directory is gone: the write fails
    with pytest.raises(LandingError, match="Could not make 1 event") as failed:
        writer.append([{"event_id": "lost"}])
    assert isinstance(failed.value, SparkTFError) and failed.value.hint
    os.rename(tmp_path / "moved", directory)
    writer.append([{"event_id": "after"}])  # the writer lives on
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(LandingError, match="is closed") as closed:
        writer.append([{"event_id": "late"}])
    assert closed.value.hint and "running server" in closed.value.hint
    assert [r["event_id"] for f in read(directory) for r in f] == ["before", "after"]


def test_records_that_json_cannot_hold_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with LandingWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError):
            writer.append([{"price": float("nan")}])
    assert read(tmp_path) == []
