from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sparktf.cli import main
from sparktf.stages.runner import STAGES


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


def test_help_puts_each_stage_on_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for i, stage in enumerate(STAGES, 1):
        assert any(line.strip().startswith(f"{i}. {stage.name}:") for line in lines), stage.name


def test_error_text_is_not_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    # A value that is rich markup used to crash the error printer (issue 15).
    assert main(["config", "--set", 'train.rnn="[/red]"']) == 1
    err = capsys.readouterr().err
    assert "[/red]" in err and "Traceback" not in err and "Internal error" not in err


def test_square_brackets_in_messages_survive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nnope = 1\n")
    assert main(["config", "--config", str(toml)]) == 1
    err = capsys.readouterr().err
    assert "in [train]" in err  # rich used to swallow "[train]" as a style tag


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
