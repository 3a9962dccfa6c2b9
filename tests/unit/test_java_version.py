"""The Java check reads the version of the real ``java``, whatever options the user has set."""

from __future__ import annotations

import os
import shutil

import pytest

from sparktf.spark import java_version


@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no java")
@pytest.mark.parametrize("variable", ["JDK_JAVA_OPTIONS", "JAVA_TOOL_OPTIONS"])
def test_options_the_jvm_announces_do_not_hide_its_version(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    plain, _ = java_version()
    monkeypatch.setenv(variable, "-XX:+UseSerialGC")  # java prints "Picked up ..." before its version
    major, first = java_version()
    assert major == plain >= 17
    assert "version" in first and "Picked up" not in first


@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no java")
def test_make_java_passes_with_jdk_java_options_set() -> None:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "tools" / "require-java.sh"
    env = {**os.environ, "JDK_JAVA_OPTIONS": "-XX:+UseSerialGC"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
