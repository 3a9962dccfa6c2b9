"""The live-event contract: which rules an event posted to ``POST /v1/events`` must pass.

:class:`EventRules` is the one object both the collector (:mod:`sparktf.serving`) and the
stream (:mod:`sparktf.online.stream`) are given, built from the config by :func:`sparktf.stages._online.event_rules`,
so the server and the stream cannot disagree on what is valid.

:func:`check_event` is the one Python implementation of those rules: the collector runs it
on each posted event, and the stream may run it again on each landing record (every value
as text, as Spark reads a landing file with ``LANDING_READ_DDL``) and get the same verdict
and the same normalized event. Its batch rules are those of
:func:`sparktf.data.validation.classify`, value for value: blank text is a missing key,
digits are epoch seconds, any other text is a timestamp as Spark's ``try_to_timestamp``
parses it (the parser below is a port of Spark's ``parseTimestampString``, session time
zone UTC), a price is text as Spark's cast to double reads it (Java's
``Double.parseDouble`` plus ``inf``/``nan``). ``tests/integration/test_event_rules_parity.py``
runs a table of tricky rows through both and asserts the same reason and detail.

The live rules come after the batch ones, in this order:

================  ==============================================================
reason            rule
================  ==============================================================
``bad_field``     ``event_id``, ``request_id``, ``session_id``, ``position`` (or a
                  text field) has a wrong type or form
``future_dated``  ``event_time`` is more than ``stream.max_future_s`` after the
                  event was acknowledged
``late_event``    (the stream's) the event arrived behind its watermark
``duplicate``     an ``event_id`` seen before (in one request, or by the stream)
================  ==============================================================
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sparktf.data.schema import CORRUPT_RECORD, KEY_COLUMNS, LANDING_FIELDS, SESSION_BREAK
from sparktf.data.validation import REASONS

__all__ = [
    "LANDING_NAMES",
    "LIVE_REASONS",
    "MAX_ID_CHARS",
    "Checked",
    "EventRules",
    "check_event",
    "epoch_seconds",
    "json_type",
    "landing_record",
    "new_event_id",
    "parse_spark_timestamp",
    "with_event_id",
]


@dataclass(frozen=True)
class EventRules:
    """What a live event must satisfy (the batch validator's rules plus the live ones).

    Attributes:
        event_types: ``data.event_types``.
        min_event_time, max_event_time: ``data.min_event_time``, ``data.max_event_time``.
        max_future_s: ``stream.max_future_s``: an event dated more than this after it was
            acknowledged is ``future_dated``.
    """

    event_types: tuple[str, ...]
    min_event_time: str
    max_event_time: str
    max_future_s: float


# --------------------------------------------------------------------------- the contract

#: Why an event is refused: the batch validator's reasons, then the live ones.
LIVE_REASONS: tuple[str, ...] = (*REASONS, "bad_field", "future_dated", "late_event")
#: The fields of a landing record, in order (the keys of a normalized event).
LANDING_NAMES: tuple[str, ...] = tuple(f.name for f in LANDING_FIELDS)
#: The longest ``event_id`` / ``request_id`` accepted.
MAX_ID_CHARS = 200
_KNOWN = frozenset(LANDING_NAMES) | {CORRUPT_RECORD}
_TEXT_FIELDS = (
    "user_id",
    "item_id",
    "event_type",
    "session_id",
    "category",
    "brand",
    "sale_id",
    "request_id",
    "experiment",
    "arm",
    "policy",
    "context",
    "model_version",
)
#: The longest ``context`` (an impression's history as a JSON array) accepted.
MAX_CONTEXT_CHARS = 65_536
_MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class Checked:
    """The verdict on one raw event.

    Attributes:
        event: the normalized event (keys :data:`LANDING_NAMES`) when it passed, else None.
        reason: one of :data:`LIVE_REASONS` when it failed, else None.
        detail: what was wrong and what to do, when it failed.
        ignored: the raw event's field names that are no landing field (not kept), sorted.
    """

    event: dict[str, Any] | None
    reason: str | None = None
    detail: str | None = None
    ignored: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.reason is None


def new_event_id() -> str:
    """A fresh event id (for an event the client sent without one)."""
    return uuid.uuid4().hex


def with_event_id(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` with its ``event_id``: the client's, or a fresh one."""
    out = dict(event)
    if out.get("event_id") is None:
        out["event_id"] = new_event_id()
    return out


def landing_record(event: Mapping[str, Any]) -> dict[str, str | None]:
    """A normalized event as a landing record: every value JSON text or null, so that Spark
    reads it back with ``LANDING_READ_DDL`` unchanged and :func:`check_event` gives the
    same event again (``ack_time`` and ``price`` as ``repr`` of the float, which round-trips)."""
    out: dict[str, str | None] = {}
    for name in LANDING_NAMES:
        value = event.get(name)
        if value is None:
            out[name] = None
        elif isinstance(value, float):
            out[name] = repr(value)
        else:
            out[name] = str(value)
    return out


def epoch_seconds(iso_text: str) -> float:
    """Epoch seconds of a timestamp text as Spark (session time zone UTC) reads it, e.g. a
    normalized event's ``event_time``.

    Raises:
        ValueError: the text is no timestamp.
    """
    micros = parse_spark_timestamp(iso_text)
    if micros is None:
        raise ValueError(f"{iso_text[:200]!r} is not a timestamp")
    return micros / 1_000_000


def check_event(raw: Mapping[str, Any], rules: EventRules, *, ack_time: float) -> Checked:
    """Check one raw event and normalize it (see the module docstring for the rules).

    Args:
        raw: the event: a JSON object posted to the server (values of any JSON type) or a
            landing record read back by Spark (every value text; a ``_corrupt_record`` that
            is not null makes it ``malformed_record``). Anything but a mapping is
            ``malformed_record``. A raw ``ack_time`` is not read: ``ack_time`` is.
        rules: the rules.
        ack_time: when the event was (or is being) acknowledged, epoch seconds.
    """
    if not isinstance(raw, Mapping):
        return Checked(None, "malformed_record", f"the event is a JSON {json_type(raw)}, not an object")
    ignored = tuple(sorted(str(k) for k in raw if k not in _KNOWN))
    corrupt = raw.get(CORRUPT_RECORD)
    if corrupt is not None:
        return Checked(None, "malformed_record", f"Spark could not parse the record {_quoted(_text(corrupt))}", ignored)

    def fail(reason: str, detail: str) -> Checked:
        return Checked(None, reason, detail, ignored)

    # missing_key: null, or text that is blank once spaces are trimmed (Spark's trim).
    missing = [k for k in KEY_COLUMNS if _absent(raw.get(k))]
    if missing:
        return fail("missing_key", f"{', '.join(missing)} is null or blank")
    if _text(raw["item_id"]) == SESSION_BREAK:
        return fail(
            "reserved_item_id",
            f"item_id '{SESSION_BREAK}' is reserved: it marks where a session ends in the histories; rename the item",
        )

    raw_time = raw["event_time"]
    time_text = _text(raw_time)
    micros = _event_micros(raw_time)
    if micros is None:
        return fail(
            "bad_timestamp",
            f"event_time {_quoted(time_text)} is not a timestamp; use ISO-8601 such as 2026-01-31T12:00:00Z, "
            "or epoch seconds",
        )
    lo, hi = _bounds(rules.min_event_time, rules.max_event_time)
    if not lo <= micros < hi:
        return fail(
            "timestamp_out_of_range",
            f"event_time {_quoted(time_text)} is outside [{rules.min_event_time}, {rules.max_event_time}) "
            "(data.min_event_time, data.max_event_time)",
        )

    event_type = raw["event_type"]
    if not isinstance(event_type, str) or event_type not in rules.event_types:
        return fail(
            "unknown_event_type",
            f"event_type {_quoted(_text(event_type))} is not one of {', '.join(rules.event_types)} (data.event_types)",
        )

    raw_price = raw.get("price")
    price: float | None = None
    if not _absent(raw_price):
        price = _price(raw_price)
        if price is None or not math.isfinite(price):
            return fail("bad_price", f"price {_quoted(_text(raw_price))} is not a finite number")
        if price < 0:
            return fail("negative_price", f"price {_quoted(_text(raw_price))} is negative")

    # bad_field: the live fields and the text fields' types.
    texts: dict[str, str | None] = {}
    for name in _TEXT_FIELDS:
        value = raw.get(name)
        if value is None:
            texts[name] = None
        elif isinstance(value, str):
            texts[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            texts[name] = _text(value)
        else:
            return fail("bad_field", f"{name} {_quoted(_text(value))} is a JSON {json_type(value)}; send a string")
    for name in ("request_id", "experiment", "arm", "policy", "model_version"):
        value = texts[name]
        if value is not None and len(value) > MAX_ID_CHARS:
            return fail("bad_field", f"{name} {_quoted(value)} is longer than {MAX_ID_CHARS} characters")
    if texts["context"] is not None and len(texts["context"]) > MAX_CONTEXT_CHARS:
        return fail("bad_field", f"context is longer than {MAX_CONTEXT_CHARS} characters")
    raw_propensity = raw.get("propensity")
    propensity: float | None = None
    if not _absent(raw_propensity):
        propensity = None if isinstance(raw_propensity, bool) else _price(raw_propensity)
        if propensity is None or not 0.0 < propensity <= 1.0:
            return fail(
                "bad_field",
                f"propensity {_quoted(_text(raw_propensity))} is not a number in (0, 1] "
                "(the probability with which the policy showed the item at its position)",
            )
    raw_score = raw.get("score")
    score: float | None = None
    if not _absent(raw_score):
        score = None if isinstance(raw_score, bool) else _price(raw_score)
        if score is None or not math.isfinite(score):
            return fail("bad_field", f"score {_quoted(_text(raw_score))} is not a finite number (the model's score)")
    request_id = texts["request_id"]

    event_id = raw.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id.strip() or len(event_id) > MAX_ID_CHARS):
        return fail(
            "bad_field",
            f"event_id {_quoted(_text(event_id))} is not a non-blank string of at most {MAX_ID_CHARS} characters; "
            "send your own unique id, or leave event_id out and the server gives one",
        )

    position_ok, position = _position(raw.get("position"))
    if not position_ok:
        return fail(
            "bad_field",
            f"position {_quoted(_text(raw.get('position')))} is not a positive integer "
            "(the item's 1-based rank in the :recommend reply)",
        )

    if micros > (ack_time + rules.max_future_s) * 1_000_000:
        return fail(
            "future_dated",
            f"event_time {_quoted(time_text)} is more than {rules.max_future_s:g} s after the event was acknowledged "
            f"({_iso(int(ack_time * 1_000_000))}, stream.max_future_s); check the client's clock",
        )

    event: dict[str, Any] = {
        "event_time": _iso(micros),
        "user_id": texts["user_id"],
        "item_id": texts["item_id"],
        "event_type": event_type,
        "session_id": texts["session_id"],
        "category": texts["category"],
        "brand": texts["brand"],
        "price": price,
        "sale_id": texts["sale_id"],
        "event_id": event_id,
        "request_id": request_id,
        "position": position,
        "experiment": texts["experiment"],
        "arm": texts["arm"],
        "propensity": propensity,
        "policy": texts["policy"],
        "context": texts["context"],
        "model_version": texts["model_version"],
        "score": score,
        "ack_time": float(ack_time),
    }
    return Checked(event, None, None, ignored)


# --------------------------------------------------------------------------- values


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, for messages (``number``, ``array``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _text(value: Any) -> str:
    """A value as text for messages (and a number as a text field's value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    import json

    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _quoted(text: str) -> str:
    return f"'{text[:200]}'"


def _absent(value: Any) -> bool:
    """Null, or text that is empty once spaces are trimmed (Spark's ``trim`` trims spaces only)."""
    return value is None or (isinstance(value, str) and value.strip(" ") == "")


def _iso(micros: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` of epoch microseconds (UTC)."""
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except OverflowError:
        return f"{micros / 1_000_000!r} epoch seconds"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rjust(26, "0") + "Z"


# Epoch seconds beyond this are no plausible event time (validation._MAX_EPOCH_S).
_MAX_EPOCH_S = 1e11
_DIGITS = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")
_FAR_FUTURE = 253402300799 * 1_000_000  # 9999-12-31 23:59:59
_FAR_PAST = -62135596800 * 1_000_000  # 0001-01-01 00:00:00


def _epoch_micros(x: float) -> int | None:
    """validation._epoch: NaN is no time, plausible seconds are converted as Spark's
    ``timestamp_seconds`` (multiply, truncate), the rest maps far outside any range."""
    if math.isnan(x):
        return None
    if abs(x) < _MAX_EPOCH_S:
        return int(x * 1_000_000)
    return _FAR_FUTURE if x > 0 else _FAR_PAST


def _event_micros(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return _epoch_micros(float(value))
        except OverflowError:  # an int beyond a double
            return _FAR_FUTURE if value > 0 else _FAR_PAST
    if not isinstance(value, str):
        return None
    s = value.strip(" ")
    if _DIGITS.search(s):
        number = _java_double(s)
        return None if number is None else _epoch_micros(number)
    return parse_spark_timestamp(s)


@lru_cache(maxsize=64)
def _bounds(lo: str, hi: str) -> tuple[int, int]:
    out = []
    for text in (lo, hi):
        micros = parse_spark_timestamp(text)
        if micros is None:
            raise ValueError(f"{text!r} is not a timestamp (data.min_event_time / data.max_event_time)")
        out.append(micros)
    return out[0], out[1]


def _price(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        return _java_double(value.strip(" "))
    return None


def _position(value: Any) -> tuple[bool, int | None]:
    """Whether the position is well-formed, and it as an int (None when absent)."""
    if value is None:
        return True, None
    if isinstance(value, bool):
        return False, None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        n = int(value.strip())
    else:
        return False, None
    return (True, n) if 1 <= n <= _MAX_INT32 else (False, None)


# Java's Double.parseDouble grammar (after String.trim), which Spark's string-to-double cast
# uses, then Spark's own special literals. Python's float() is more lenient (underscores,
# Unicode digits and spaces, "nan"/"inf" in any case), so it only converts what matched.
_JAVA_DEC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?")
_JAVA_HEX = re.compile(r"([+-]?)0[xX]((?:[0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)[fFdD]?")
_SPECIAL = {
    "NaN": math.nan,
    "+NaN": math.nan,
    "-NaN": math.nan,
    "Infinity": math.inf,
    "+Infinity": math.inf,
    "-Infinity": -math.inf,
}
_SPARK_SPECIAL = {
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
    "nan": math.nan,
}


def _java_trim(s: str) -> str:
    start, end = 0, len(s)
    while start < end and s[start] <= " ":
        start += 1
    while end > start and s[end - 1] <= " ":
        end -= 1
    return s[start:end]


def _java_double(text: str) -> float | None:
    """``text`` as Spark's ``try_cast(text AS DOUBLE)`` reads it, None when it cannot."""
    s = _java_trim(text)
    if s in _SPECIAL:
        return _SPECIAL[s]
    if _JAVA_DEC.fullmatch(s):
        return float(s.rstrip("fFdD"))
    hexed = _JAVA_HEX.fullmatch(s)
    if hexed:
        try:
            magnitude = float.fromhex("0x" + hexed.group(2))
        except OverflowError:
            magnitude = math.inf
        return -magnitude if hexed.group(1) == "-" else magnitude
    return _SPARK_SPECIAL.get(s.lower())


# --------------------------------------------------------------------------- Spark's timestamp parser


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _is_control(ch: str) -> bool:
    # UTF8String.isWhitespaceOrISOControl on a byte: ASCII whitespace and controls.
    return ch <= " " or ch == "\x7f"


def parse_spark_timestamp(text: str, *, session_zone: str = "UTC") -> int | None:
    """Epoch microseconds of ``text`` as Spark's ``try_to_timestamp(text)`` (no format) reads
    it in session time zone ``session_zone``, None when Spark gives null.

    A port of Spark's ``SparkDateTimeUtils.parseTimestampString`` and ``stringToTimestamp``:
    ``[+-]yyyy[-[m]m[-[d]d]]``, a date then ``T`` or a space and
    ``[h]h:[m]m[:[s]s[.fraction]][zone]``, or a time alone (today). A zone is ``Z``, an
    offset, ``UTC``/``GMT``/``UT`` with or without an offset, a short id or a region id.
    """
    s = text
    j, end = 0, len(s)
    while j < end and _is_control(s[j]):
        j += 1
    while end > j and _is_control(s[end - 1]):
        end -= 1
    if j == end:
        return None
    segments = [1, 1, 1, 0, 0, 0, 0, 0, 0]
    i = value = digits = digits_frac = 0
    tz: str | None = None
    just_time = False
    year_sign: int | None = None

    def valid(segment: int, n: int) -> bool:
        return (
            segment == 6
            or (segment == 0 and 4 <= n <= 6)
            or (segment == 7 and n <= 2)
            or (segment not in (0, 6, 7) and 0 < n <= 2)
        )

    if s[j] in "+-":
        year_sign = -1 if s[j] == "-" else 1
        j += 1
    while j < end:
        b = s[j]
        if not ("0" <= b <= "9"):
            if j == 0 and b == "T":
                just_time = True
                i += 3
            elif i < 2:
                if b == "-":
                    if not valid(i, digits):
                        return None
                    segments[i], value, digits = value, 0, 0
                    i += 1
                elif i == 0 and b == ":" and year_sign is None:
                    just_time = True
                    if not valid(3, digits):
                        return None
                    segments[3], value, digits = value, 0, 0
                    i = 4
                else:
                    return None
            elif i == 2:
                if b not in " T" or not valid(i, digits):
                    return None
                segments[i], value, digits = value, 0, 0
                i += 1
            elif i in (3, 4):
                if b != ":" or not valid(i, digits):
                    return None
                segments[i], value, digits = value, 0, 0
                i += 1
            elif i in (5, 6):
                if not valid(i, digits):
                    return None
                segments[i], value, digits = value, 0, 0
                if b == "." and i == 5:
                    i += 1
                else:
                    i += 1
                    tz = s[j:end]
                    j = end - 1
                if i == 6 and b != ".":
                    i += 1
            elif i < 9 and b in ": ":
                if not valid(i, digits):
                    return None
                segments[i], value, digits = value, 0, 0
                i += 1
            else:
                return None
        else:
            if i == 6:
                digits_frac += 1
            if i != 6 or digits < 6:
                value = value * 10 + ord(b) - 48
            digits += 1
        j += 1
    if not valid(i, digits):
        return None
    segments[i] = value
    while digits_frac < 6:
        segments[6] *= 10
        digits_frac += 1
    zone: str | int | None = None
    if tz is not None:
        zone = _zone(_java_trim(tz))
        if zone is None:
            return None
    year = segments[0] * (year_sign or 1)
    month, day, hour, minute, second, micro = segments[1:7]
    if not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
        return None
    if just_time:
        today = datetime.now(_tzinfo(zone if zone is not None else session_zone)).date()
        year, month, day = today.year, today.month, today.day
    if not (1 <= month <= 12 and 1 <= day <= _month_days(year, month)):
        return None
    local_s = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    offset = _offset_s(zone if zone is not None else session_zone, year, month, day, hour, minute, second)
    micros = (local_s - offset) * 1_000_000 + micro
    if not -(2**63) <= micros < 2**63:  # instantToMicros overflows
        return None
    return micros


# ZoneId.SHORT_IDS, which Spark's getZoneId passes to ZoneId.of.
_SHORT_IDS = {
    "EST": "-05:00",
    "MST": "-07:00",
    "HST": "-10:00",
    "ACT": "Australia/Darwin",
    "AET": "Australia/Sydney",
    "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo",
    "AST": "America/Anchorage",
    "BET": "America/Sao_Paulo",
    "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare",
    "CNT": "America/St_Johns",
    "CST": "America/Chicago",
    "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa",
    "ECT": "Europe/Paris",
    "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo",
    "MIT": "Pacific/Apia",
    "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland",
    "PLT": "Asia/Karachi",
    "PNT": "America/Phoenix",
    "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles",
    "SST": "Pacific/Guadalcanal",
    "VST": "Asia/Ho_Chi_Minh",
}
_SINGLE_HOUR = re.compile(r"([+-])(\d):")
_SINGLE_MINUTE = re.compile(r"([+-])(\d\d):(\d)$")
_REGION = re.compile(r"[A-Za-z][A-Za-z0-9~/._+-]+")


def _zone(name: str) -> str | int | None:
    """A zone id as Spark's ``getZoneId`` reads it: a fixed offset in seconds, a region name,
    or None when Java refuses it."""
    name = _SINGLE_HOUR.sub(r"\g<1>0\g<2>:", name, count=1)
    name = _SINGLE_MINUTE.sub(r"\g<1>\g<2>:0\g<3>", name, count=1)
    name = _SHORT_IDS.get(name, name)
    if len(name) <= 1 or name[0] in "+-":
        return _offset(name)
    for prefix in ("UTC", "GMT", "UT"):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if not rest:
                return 0
            if rest[0] in "+-":
                return _offset(rest)
            break
    if not _REGION.fullmatch(name) or name.startswith(("posix/", "right/")):
        return None
    return name if _tzinfo(name) is not None else None


def _offset(text: str) -> int | None:
    """Seconds of a ``ZoneOffset.of`` id (``Z``, ``+h``, ``+hh``, ``+hhmm``, ``+hh:mm``,
    ``+hhmmss``, ``+hh:mm:ss``), None when Java refuses it."""
    if text == "Z":
        return 0
    if len(text) == 2:
        text = text[0] + "0" + text[1]
    layouts = {3: ((1, False),), 5: ((1, False), (3, False)), 6: ((1, False), (4, True))}
    layouts |= {7: ((1, False), (3, False), (5, False)), 9: ((1, False), (4, True), (7, True))}
    layout = layouts.get(len(text))
    if layout is None or text[0] not in "+-":
        return None
    parts = []
    for pos, colon in layout:
        pair = text[pos : pos + 2]
        if (colon and text[pos - 1] != ":") or not (pair.isascii() and pair.isdigit()):
            return None
        parts.append(int(pair))
    hours, minutes, seconds = [*parts, 0, 0][:3]
    if hours > 18 or minutes > 59 or seconds > 59 or (hours == 18 and (minutes or seconds)):
        return None
    total = hours * 3600 + minutes * 60 + seconds
    return -total if text[0] == "-" else total


@lru_cache(maxsize=256)
def _tzinfo(zone: str | int) -> Any:
    if isinstance(zone, int):
        from datetime import timezone

        return timezone(timedelta(seconds=zone))
    if zone == "UTC":
        return UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(zone)
    except (ValueError, OSError, LookupError):
        return None


def _offset_s(zone: str | int, year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """The zone's UTC offset at a local time, as ``ZonedDateTime.of`` picks it (a time in a
    gap is read with the offset before it, a time in an overlap with the earlier offset)."""
    if isinstance(zone, int):
        return zone
    info = _tzinfo(zone)
    if info is None or info is UTC:
        return 0
    clamped = min(max(year, 1), 9999)
    day = min(day, _month_days(clamped, month))
    local = datetime(clamped, month, day, hour, minute, second, tzinfo=info, fold=0)
    delta = local.utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0
