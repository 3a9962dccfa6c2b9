"""The one models:/ URI grammar (sparktf.registry.uri), as load_model, serve, batch and index read it."""

from __future__ import annotations

import pytest

from sparktf.errors import RegistryError
from sparktf.registry.uri import ModelURI, is_logged_model_uri, logged_model_id, parse_model_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/recs@champion", ModelURI("recs", alias="champion")),
        ("models:/recs/3", ModelURI("recs", version=3)),
        ("models:/recs/latest", ModelURI("recs", version="latest")),
        ("models:/recs@champion/sparktf/index", ModelURI("recs", alias="champion", path="sparktf/index")),
        ("models:/my.model-v2@canary_1", ModelURI("my.model-v2", alias="canary_1")),
    ],
)
def test_registry_uris_parse_and_print_back(text: str, expected: ModelURI) -> None:
    parsed = parse_model_uri(text)
    assert parsed == expected
    assert str(parsed) == text
    assert parsed.fixed_version == (expected.version if isinstance(expected.version, int) else None)


@pytest.mark.parametrize(
    "text", ["models:/recs", "models:/recs@", "models:/@champion", "models:/recs/v3", "models:/recs@1st", "runs:/a/b"]
)
def test_malformed_uris_name_the_forms(text: str) -> None:
    with pytest.raises(RegistryError, match=r"models:/name@alias, models:/name/<version> or models:/name/latest"):
        parse_model_uri(text)


def test_a_path_inside_the_model_can_be_refused() -> None:
    with pytest.raises(RegistryError, match="is not of the form"):
        parse_model_uri("models:/recs@champion/sparktf/index", allow_path=False)


def test_logged_models_are_not_registry_versions() -> None:
    assert is_logged_model_uri("models:/m-0123abcd") and logged_model_id("models:/m-0123abcd/") == "m-0123abcd"
    assert not is_logged_model_uri("models:/recs@champion") and logged_model_id("models:/recs/3") is None
