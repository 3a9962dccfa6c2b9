"""The data layer's config fields: defaults and the allowed values named in errors."""

from __future__ import annotations

import pytest

from sparktf.config import load_config
from sparktf.errors import ConfigError


def test_defaults() -> None:
    cfg = load_config()
    assert cfg.generator.follow_probability == 0.6 and cfg.generator.successors_per_item == 3
    assert cfg.generator.session_ids is False
    # Impressions and clicks are allowed events but make no sequence: a click is followed by the view it leads to.
    assert cfg.features.positive_event_types == ("view", "add_to_cart", "purchase")
    assert set(cfg.data.event_types) == {"impression", "click", *cfg.features.positive_event_types}


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("generator.follow_probability=0.99", "generator.follow_probability", "between 0 and 0.95"),
        ("generator.successors_per_item=0", "generator.successors_per_item", "between 1 and 20"),
        ("generator.session_ids=1", "generator.session_ids", "true or false"),
        ("features.positive_event_types=[]", "features.positive_event_types", "at least one"),
        ("features.min_user_events=2", "features.min_user_events", "3 or more"),
        ("features.price_buckets=[10.0, 5.0]", "features.price_buckets", "strictly increasing"),
        ("data.format=avro", "data.format", "'parquet', 'csv', 'json'"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(override: str, field: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert field in info.value.message and allowed in info.value.message
