"""MovieLens parsing and the checksum-pinned wheel cache, without Spark."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sparktf.data import movielens
from sparktf.data.movielens import GENRES, cache_dir, parse_genres, parse_ratings, recbole_wheel
from sparktf.errors import DataError

ATOMIC = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "\n"
    "196\t377\t1\t881250949\n"
    "22\t377\n"
    "196\t51\t2\t881250949\n"
)


def test_atomic_ratings_with_ties_in_file_order_and_a_short_line_kept() -> None:
    rows = parse_ratings(ATOMIC, "ml.inter")
    assert rows[0] == ("881250949", "196", "242", "view", "3", None)
    assert rows[1] == ("891717742", "186", "302", "view", "3", None)
    # user 196 rated three movies in one second: the file's order survives as microseconds
    assert [r[0] for r in rows if r[1] == "196"] == ["881250949", "881250949.000001", "881250949.000002"]
    assert rows[3] == (None, None, None, None, None, "ml.inter:6: 22\t377")  # kept for the quarantine
    assert len(rows) == 5  # the blank line is not a record


def test_atomic_header_columns_may_come_in_any_order() -> None:
    text = "timestamp:float\titem_id:token\tuser_id:token\trating:float\n881250949\t242\t196\t3\n"
    assert parse_ratings(text, "x", event_type="purchase") == [("881250949", "196", "242", "purchase", "3", None)]


def test_atomic_header_without_a_timestamp_names_the_file() -> None:
    with pytest.raises(DataError, match=r"bad.inter, line 1: .*timestamp"):
        parse_ratings("user_id:token\titem_id:token\trating:float\n1\t2\t3\n", "bad.inter")


def test_grouplens_u_data() -> None:
    rows = parse_ratings("1\t10\t5\t874965758\n2\t10\t4\t888550871\n1\t11\t\t874965758\n", "u.data")
    assert rows == [
        ("874965758", "1", "10", "view", "5", None),
        ("888550871", "2", "10", "view", "4", None),
        ("874965758.000001", "1", "11", "view", "", None),
    ]


def test_genres_from_both_item_formats() -> None:
    atomic = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation Children's Comedy\n2\tX\t1990\t\n"
    assert parse_genres(atomic) == {"1": "Animation"}
    flags = ["0"] * len(GENRES)
    flags[GENRES.index("Comedy")] = flags[GENRES.index("Drama")] = "1"
    u_item = "7|Some Movie (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n8|broken line\n"
    assert parse_genres(u_item) == {"7": "Comedy"}


def test_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "sparktf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "sparktf"


def test_a_wheel_with_the_wrong_checksum_is_refused_and_removed(tmp_path: Path) -> None:
    fake = tmp_path / f"recbole-{movielens.RECBOLE_VERSION}-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(DataError) as info:
        recbole_wheel(tmp_path)
    assert hashlib.sha256(b"not the wheel").hexdigest() in info.value.message
    assert movielens.RECBOLE_SHA256 in info.value.message
    assert not fake.exists()


def test_offline_download_fails_with_the_command_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A real pip run against an index that refuses connections: what an offline machine sees.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(DataError) as info:
        recbole_wheel(tmp_path / "cache")
    err = info.value
    assert "recbole==1.2.1" in err.message and str(tmp_path / "cache") in err.message
    assert err.hint and "pip download --no-deps" in err.hint and "data.path" in err.hint
    assert not list((tmp_path / "cache").glob("*.whl"))  # nothing half-downloaded is left
