"""Stage skipping by fingerprints, with fake stage functions (no Spark, no TF)."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sparktf import pipeline
from sparktf.config import Config, load_config
from sparktf.pipeline import STAGES, PipelineRunner, listing_fingerprint

CALLS: list[str] = []


def _fake_stage(name: str, outputs: tuple[str, ...]) -> Any:
    def fn(cfg: Config, context: dict[str, Any]) -> dict[str, Any]:
        CALLS.append(name)
        for out in outputs:
            path = (
                cfg.paths.state_file(os.path.basename(out))
                if out.startswith("state/")
                else cfg.paths.join(*out.split("/"))
            )
            if out.endswith(".json"):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Path(path).write_text(f'{{"stage": "{name}", "n": {len(CALLS)}}}')
            else:
                os.makedirs(path, exist_ok=True)
                Path(path, f"part-{len(CALLS)}.parquet").write_text("x" * len(CALLS))
        return {"ran": name}

    return fn


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_stages")
    for stage in STAGES:
        setattr(module, stage.name, _fake_stage(stage.name, stage.outputs))
    monkeypatch.setitem(sys.modules, "fake_stages", module)
    fakes = tuple(pipeline.Stage(**{**s.__dict__, "impl": f"fake_stages:{s.name}"}) for s in STAGES)
    monkeypatch.setattr(pipeline, "STAGES", fakes)
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
    ctx = runner.run()
    assert CALLS == []
    assert events == [("skip", n) for n in names]
    assert ctx["features"] == {"ran": "features"}  # results come back from the record


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


def test_listing_fingerprint_sees_names_and_sizes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "part-0").write_text("abc")
    first = listing_fingerprint([str(d)])
    assert listing_fingerprint([str(d)]) == first
    (d / "part-0").write_text("abcd")
    assert listing_fingerprint([str(d)]) != first
    assert listing_fingerprint([str(tmp_path / "missing")]) != listing_fingerprint([str(d)])
