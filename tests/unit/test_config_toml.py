"""`sparktf config` output (config_to_toml) reads back to the same config, and secrets stay out of it.

The property test builds valid configs whose strings hold quotes, backslashes,
control characters and non-ASCII text, in keys of inline tables as well as in
values, with nested tables (spark.conf, serve.labels), lists and the
``[[gate.thresholds]]`` array of tables with ``nan`` bounds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sparktf.config import (
    REDACTED,
    Config,
    DataConfig,
    EvalConfig,
    FeatureConfig,
    GateConfig,
    IndexConfig,
    MetricThreshold,
    ServeConfig,
    SparkConfig,
    TrackingConfig,
    TrainConfig,
    config_to_dict,
    config_to_toml,
    load_config,
    secret_fields,
)
from sparktf.errors import ConfigError

# --------------------------------------------------------------------------- strategies

# Characters that TOML must escape or that break naive quoting, plus non-ASCII ones
# that may stay literal (C1 controls, line/paragraph separators, BOM, astral plane).
_NASTY = [
    '"',
    "'",
    "\\",
    '\\"',
    "\n",
    "\r\n",
    "\t",
    "\b",
    "\f",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    "é",
    "😀",
]
# Lone surrogates (category Cs) are excluded: TOML text is UTF-8, which cannot carry
# them, so config_to_toml refuses them (test_a_lone_surrogate_is_refused_naming_the_field).
_CHARS = st.characters(exclude_categories=["Cs"])
_PIECE = st.one_of(st.sampled_from(_NASTY), _CHARS)
text = st.lists(_PIECE, max_size=8).map("".join)
nonempty = st.lists(_PIECE, min_size=1, max_size=8).map("".join)
not_blank = st.builds(lambda a, c, b: a + c + b, text, st.sampled_from(["x", "é", '"', "\\", "😀"]), text)
# Keys of inline tables: bare-key-safe ones, dotted ones (must be quoted) and anything.
key = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), st.just("spark.app.x"), text)
finite = st.floats(allow_nan=False, allow_infinity=False)
bound = st.one_of(st.just(math.nan), finite)


def _build(cls: Any, **kwargs: Any) -> Any:
    """Build a section, discarding the example when its own _validate refuses it."""
    try:
        return cls(**kwargs)
    except ConfigError:
        assume(False)


@st.composite
def thresholds(draw: st.DrawFn) -> MetricThreshold:
    absolute = draw(bound)
    relative = draw(st.one_of(st.just(math.nan), st.floats(-0.99, 1e6)))
    # At least one bound must be set: min_value is a number whenever the other two are nan.
    value = draw(bound if absolute == absolute or relative == relative else finite)
    return typing.cast(
        MetricThreshold,
        _build(
            MetricThreshold,
            metric=draw(nonempty),
            higher_is_better=draw(st.booleans()),
            min_value=value,
            min_absolute_change=absolute,
            min_relative_change=relative,
            slice=draw(text),
        ),
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    masters = st.one_of(
        st.sampled_from(["local[*]", "local[3]", "yarn"]), text.map(lambda s: "spark://h" + s.replace("\n", ""))
    )
    spark = _build(
        SparkConfig, master=draw(masters), app_name=draw(nonempty), conf=draw(st.dictionaries(key, text, max_size=4))
    )
    data = _build(
        DataConfig,
        source=draw(st.sampled_from(["synthetic", "path"])),
        path=draw(nonempty),
        table=draw(text),
        event_types=draw(st.lists(nonempty, min_size=1, max_size=4)),
        max_bad_fraction=draw(st.floats(0.0, 1.0)),
    )
    buckets = draw(st.lists(st.floats(allow_nan=False), unique=True, max_size=5))
    features = _build(
        FeatureConfig,
        # -0.0 and 0.0 are one bucket edge to set() but two to the round trip; keep one.
        price_buckets=sorted({0.0 if b == 0 else b for b in buckets}),
        positive_event_types=data.event_types[:1],
    )
    train = _build(TrainConfig, learning_rate=draw(st.floats(1e-300, 9.99)), dropout=draw(st.floats(0.0, 0.99)))
    tracking = _build(TrackingConfig, tracking_uri=draw(text), experiment=draw(nonempty))
    evaluation = _build(EvalConfig, ks=draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=5)))
    gate = _build(GateConfig, thresholds=draw(st.lists(thresholds(), min_size=1, max_size=3)))
    index = _build(IndexConfig, model=draw(text.filter(lambda s: "://" not in s)))
    serve = _build(
        ServeConfig,
        host=draw(not_blank),
        auth_token=draw(text.filter(lambda s: s != REDACTED)),
        versions=draw(st.lists(st.integers(0, 2**40), max_size=3)),
        labels=draw(st.dictionaries(st.from_regex(r"[a-zA-Z0-9_]{1,6}", fullmatch=True), nonempty, max_size=3)),
        index_path=draw(text),
        poll_interval_s=draw(st.floats(0.0, 86_400.0)),
    )
    return typing.cast(
        Config,
        _build(
            Config,
            workdir=draw(not_blank),
            spark=spark,
            data=data,
            features=features,
            train=train,
            tracking=tracking,
            evaluation=evaluation,
            gate=gate,
            index=index,
            serve=serve,
        ),
    )


# --------------------------------------------------------------------------- helpers


def _same(a: Any, b: Any) -> bool:
    """Equal, with nan equal to nan, and floats distinguished from ints and -0.0 from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _read_back(tmp_path: Path, toml: str) -> Config:
    f = tmp_path / "config.toml"
    f.write_text(toml, encoding="utf-8")
    return load_config(f)


# --------------------------------------------------------------------------- round trip


@settings(max_examples=200, deadline=None)
@given(cfg=configs())
def test_any_valid_config_reads_back_equal(tmp_path_factory: pytest.TempPathFactory, cfg: Config) -> None:
    toml = config_to_toml(cfg, redact_secrets=False)
    back = _read_back(tmp_path_factory.mktemp("rt"), toml)
    assert _same(config_to_dict(back, redact_secrets=False), config_to_dict(cfg, redact_secrets=False)), toml


def test_a_quote_in_a_spark_conf_value_reads_back(tmp_path: Path) -> None:
    # The issue's example: `sparktf config --set 'spark.conf={"spark.app.x"="it'"'"'s"}'`.
    cfg = load_config(overrides=['spark.conf={"spark.app.x"="it\'s", "a\\"b" = "c\\\\d"}'])
    assert cfg.spark.conf == {"spark.app.x": "it's", 'a"b': "c\\d"}
    toml = config_to_toml(cfg)
    assert 'conf = {"spark.app.x" = "it\'s", "a\\"b" = "c\\\\d"}' in toml
    assert _read_back(tmp_path, toml).spark.conf == cfg.spark.conf


def test_control_characters_are_escaped_and_floats_cover_nan_and_inf() -> None:
    cfg = Config(
        workdir="w\x00\b\t\n\f\r\x1f\x7fé",
        features=FeatureConfig(price_buckets=(-math.inf, 1e-300, 5.0, 1e300, math.inf)),
    )
    toml = config_to_toml(cfg)
    assert toml.startswith('workdir = "w\\u0000\\b\\t\\n\\f\\r\\u001F\\u007Fé"\n')
    assert "price_buckets = [-inf, 1e-300, 5.0, 1e+300, inf]" in toml
    assert "min_absolute_change = nan" in toml
    parsed = tomllib.loads(toml)
    assert parsed["workdir"] == cfg.workdir
    assert parsed["features"]["price_buckets"] == list(cfg.features.price_buckets)
    assert [t["metric"] for t in parsed["gate"]["thresholds"]] == [t.metric for t in cfg.gate.thresholds]


def test_a_lone_surrogate_is_refused_naming_the_field() -> None:
    # What Python makes of a command-line argument that is not UTF-8.
    cfg = Config(spark=SparkConfig(conf={"spark.x": "a\udcffb"}))
    with pytest.raises(ConfigError, match=r"spark\.conf\.spark\.x holds the lone surrogate U\+DCFF"):
        config_to_toml(cfg)


# --------------------------------------------------------------------------- secrets

PLANTED = "tok-3f9c1e0b7a-PLANTED"


def test_secret_fields_are_marked_on_the_fields() -> None:
    assert secret_fields(Config()) == ["serve.auth_token", "online.redis_url"]
    assert secret_fields(ServeConfig()) == ["auth_token"]


def test_every_field_named_like_a_secret_is_marked_secret() -> None:
    # A guard for new fields: one called *_token or *password* that nobody marked
    # would be logged to MLflow in the clear.
    marked = set(secret_fields(Config()))
    words = ("token", "secret", "password", "passwd", "credential", "api_key")
    named = set()
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.type) or isinstance(section.type, str):
            value = getattr(Config(), section.name)
            if dataclasses.is_dataclass(value):
                named |= {
                    f"{section.name}.{f.name}" for f in dataclasses.fields(value) if any(w in f.name for w in words)
                }
    assert named <= marked, f"mark these with _secret() in config.py: {sorted(named - marked)}"
    assert named, "the guard looks at no field at all"


def test_a_planted_token_never_appears_in_redacted_output(tmp_path: Path) -> None:
    cfg = load_config(overrides=[f"serve.auth_token={PLANTED}"])
    assert cfg.serve.auth_token == PLANTED
    d = config_to_dict(cfg)
    assert PLANTED not in json.dumps(d) and d["serve"]["auth_token"] == REDACTED
    assert PLANTED not in json.dumps(config_to_dict(cfg.serve))
    toml = config_to_toml(cfg)
    assert PLANTED not in toml
    assert f'auth_token = "{REDACTED}"  # secret, redacted: set the real value with --set serve.auth_token=...' in toml
    # The redacted file fed back fails naming the field rather than serving with the marker as the token.
    with pytest.raises(ConfigError, match=r"serve\.auth_token = '<redacted>' is the marker"):
        _read_back(tmp_path, toml)


def test_without_redaction_the_token_round_trips_exactly(tmp_path: Path) -> None:
    cfg = load_config(overrides=[f"serve.auth_token={PLANTED}"])
    assert config_to_dict(cfg, redact_secrets=False)["serve"]["auth_token"] == PLANTED
    back = _read_back(tmp_path, config_to_toml(cfg, redact_secrets=False))
    assert back.serve == cfg.serve  # the gate's nan bounds make whole-Config == useless
    assert _same(config_to_dict(back, redact_secrets=False), config_to_dict(cfg, redact_secrets=False))


def test_an_empty_secret_is_shown_empty_so_the_output_says_auth_is_off() -> None:
    assert config_to_dict(Config())["serve"]["auth_token"] == ""
    assert 'auth_token = ""\n' in config_to_toml(Config())
