"""Stage skipping by fingerprints, with fake stage functions (no Spark, no TF)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sparktf.config import Config, load_config
from sparktf.stages import runner
from sparktf.stages.runner import STAGES, PipelineRunner, listing_fingerprint
from sparktf.stages.state import StageResult

CALLS: list[str] = []


def _fake_stage(name: str, outputs: tuple[str, ...]) -> Any:
    @dataclasses.dataclass(frozen=True)
    class Ran(StageResult):
        STAGE: ClassVar[str] = name
        ran: str

    def fn(cfg: Config) -> StageResult:
        CALLS.append(name)
        for out in outputs:
            path = cfg.paths.join(*out.split("/"))
            os.makedirs(path, exist_ok=True)
            Path(path, f"part-{len(CALLS)}.parquet").write_text("x" * len(CALLS))
        return Ran(ran=name)

    return fn


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = tuple(dataclasses.replace(s, run=_fake_stage(s.name, s.outputs)) for s in STAGES)
    monkeypatch.setattr(runner, "STAGES", fakes)
    CALLS.clear()


def _cfg(tmp_path: Path, *overrides: str) -> Config:
    return load_config(overrides=[f'workdir="{tmp_path}/w"', *overrides])


def test_second_run_with_nothing_changed_skips_every_stage(tmp_path: Path, fake_stages: None) -> None:
    names = [s.name for s in STAGES]
    PipelineRunner(_cfg(tmp_path)).run()
    assert CALLS == names
    CALLS.clear()
    events: list[tuple[str, str]] = []
    runner = PipelineRunner(_cfg(tmp_path), on_event=lambda kind, st, d: events.append((kind, st.name)))
    assert [a for _, a in runner.plan()] == ["skip"] * len(names)
    records = runner.run()
    assert CALLS == []
    assert events == [("skip", n) for n in names]
    assert records["features"].result == {"ran": "features"}  # results come back from the record


def test_config_change_reruns_that_stage_and_everything_after(tmp_path: Path, fake_stages: None) -> None:
    PipelineRunner(_cfg(tmp_path)).run()
    CALLS.clear()
    PipelineRunner(_cfg(tmp_path, "train.epochs=3")).run()
    assert CALLS == ["train", "evaluate", "register", "index", "recommend"]


def test_from_forces_a_stage_and_the_rest(tmp_path: Path, fake_stages: None) -> None:
    PipelineRunner(_cfg(tmp_path)).run()
    CALLS.clear()
    PipelineRunner(_cfg(tmp_path)).run("index")
    assert CALLS == ["index", "recommend"]


def test_a_deleted_output_reruns_its_stage(tmp_path: Path, fake_stages: None) -> None:
    cfg = _cfg(tmp_path)
    PipelineRunner(cfg).run()
    CALLS.clear()
    import shutil

    shutil.rmtree(cfg.paths.tfrecords)
    PipelineRunner(cfg).run()
    assert CALLS[0] == "tfrecords" and CALLS[-1] == "recommend"


def test_changed_user_input_files_rerun_from_the_first_stage(tmp_path: Path, fake_stages: None) -> None:
    data = tmp_path / "events"
    data.mkdir()
    (data / "a.parquet").write_text("1")
    over = ["data.source=path", f'data.path="{data}"']
    PipelineRunner(_cfg(tmp_path, *over)).run()
    CALLS.clear()
    PipelineRunner(_cfg(tmp_path, *over)).run()
    assert CALLS == []
    (data / "b.parquet").write_text("2")
    PipelineRunner(_cfg(tmp_path, *over)).run()
    assert CALLS[0] == "generate" and len(CALLS) == len(STAGES)


def test_listing_fingerprint_sees_names_sizes_and_edits_in_place(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "part-0").write_text("abc")
    first = listing_fingerprint([str(d)])
    assert listing_fingerprint([str(d)]) == first
    (d / "part-0").write_text("abcd")
    assert listing_fingerprint([str(d)]) != first
    assert listing_fingerprint([str(tmp_path / "missing")]) != listing_fingerprint([str(d)])
    # An edit in place at the same size (issue 15: a corrupted file went unnoticed).
    second = listing_fingerprint([str(d)])
    st = os.stat(d / "part-0")
    (d / "part-0").write_text("abce")
    os.utime(d / "part-0", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert listing_fingerprint([str(d)]) != second


def test_a_user_input_edited_in_place_reruns_from_the_first_stage(tmp_path: Path, fake_stages: None) -> None:
    data = tmp_path / "events"
    data.mkdir()
    (data / "a.parquet").write_text("1234")
    over = ["data.source=path", f'data.path="{data}"']
    PipelineRunner(_cfg(tmp_path, *over)).run()
    CALLS.clear()
    st = os.stat(data / "a.parquet")
    (data / "a.parquet").write_text("5678")  # same size
    os.utime(data / "a.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    PipelineRunner(_cfg(tmp_path, *over)).run()
    assert CALLS[0] == "generate" and len(CALLS) == len(STAGES)


def test_a_deleted_tracking_store_reruns_the_stages_that_wrote_into_it(tmp_path: Path, fake_stages: None) -> None:
    cfg = _cfg(tmp_path)
    store = Path(cfg.tracking_uri.removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("db")
    PipelineRunner(cfg).run()
    CALLS.clear()
    PipelineRunner(cfg).run()
    assert CALLS == []
    store.unlink()
    PipelineRunner(cfg).run()
    assert CALLS == ["train", "evaluate", "register", "index", "recommend"]


def test_a_lost_stage_record_reruns_that_stage(tmp_path: Path, fake_stages: None) -> None:
    cfg = _cfg(tmp_path)
    PipelineRunner(cfg).run()
    CALLS.clear()
    os.remove(cfg.paths.state_file("evaluate.json"))
    PipelineRunner(cfg).run()
    assert CALLS == ["evaluate", "register", "index", "recommend"]


def test_events_the_stream_appended_rerun_features_and_what_follows(tmp_path: Path, fake_stages: None) -> None:
    """`sparktf stream` appends to data/live/events: the next run rebuilds the features (and
    retrains), and nothing upstream of them reruns."""
    cfg = _cfg(tmp_path)
    PipelineRunner(cfg).run()
    CALLS.clear()
    batch = Path(cfg.paths.live_events) / "batch_id=0"
    batch.mkdir(parents=True)
    (batch / "part-0.parquet").write_text("1")
    PipelineRunner(cfg).run()
    assert CALLS[0] == "features" and "validate" not in CALLS and CALLS[-1] == "recommend"
    CALLS.clear()
    PipelineRunner(cfg).run()
    assert CALLS == []
