from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sparktf.cli import main
from sparktf.pipeline import STAGES


def test_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert stage.name in out
    for command in ("env", "check", "run", "serve", "promote"):
        assert command in out


def test_config_prints_effective_toml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "train.epochs=3", "--master", "local[2]"]) == 0
    out = capsys.readouterr().out
    assert "epochs = 3" in out and 'master = "local[2]"' in out


def test_bad_config_prints_headline_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "train.epochs=-1"]) == 1
    err = capsys.readouterr().err
    assert "Invalid configuration" in err and "train.epochs = -1" in err
    assert "Traceback" not in err


def test_an_unbuilt_stage_says_so_and_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every stage is built now; the NotBuiltYet path stays for stages added later.
    from sparktf import pipeline

    stages = tuple(pipeline.Stage(**{**s.__dict__, "impl": None}) if s.name == "index" else s for s in STAGES)
    monkeypatch.setattr(pipeline, "STAGES", stages)
    assert main(["index"]) == 3
    err = capsys.readouterr().err
    assert "Not built yet" in err and "issue #8" in err


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("sparktf")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "pipeline" in out.stdout


def _fake_java(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_old_java_stops_with_one_line_saying_what_to_install(tmp_path: Path) -> None:
    home = _fake_java(tmp_path, 'openjdk version "11.0.20" 2023-07-18')
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["bash", str(root / "tools" / "require-java.sh")],
        env={**os.environ, "JAVA_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 11" in lines[0] and "17" in lines[0]


def test_missing_java_stops_with_one_line(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # no java here
    out = subprocess.run(
        ["/bin/bash", str(root / "tools" / "require-java.sh")], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "install Java 17" in out.stderr


def test_java17_passes_and_python_check_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparktf.errors import EnvironmentCheckError
    from sparktf.spark import require_java

    home = _fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(["bash", str(root / "tools" / "require-java.sh")], env={**os.environ, "JAVA_HOME": str(home)})
    assert out.returncode == 0
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert require_java() == 17
    old = _fake_java(tmp_path / "old", 'java version "1.8.0_292"')
    monkeypatch.setenv("JAVA_HOME", str(old))
    with pytest.raises(EnvironmentCheckError, match="Java 8 found"):
        require_java()
