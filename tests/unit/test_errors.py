from __future__ import annotations

import pickle

import pytest

from sparktf import errors
from sparktf.errors import CorruptRecordError, SparkTFError

ALL = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_fields(cls: type[SparkTFError]) -> None:
    err = cls("saw 3, wanted 4", hint="set x=4", file="part-0.tfrecord", offset=1234)
    err.extra_attribute = "kept"  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.message == "saw 3, wanted 4"
    assert back.hint == "set x=4"
    assert back.context == {"file": "part-0.tfrecord", "offset": 1234}
    assert back.extra_attribute == "kept"
    assert str(back) == str(err)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_is_in_the_tree_with_a_headline(cls: type[SparkTFError]) -> None:
    assert issubclass(cls, SparkTFError)
    assert cls.headline[:1].isupper() or cls is SparkTFError


def test_subclass_headlines_differ_from_root() -> None:
    assert {c.headline for c in ALL if c is not SparkTFError} - {SparkTFError.headline}
    assert len({c.headline for c in ALL}) == len(ALL)


def test_render_has_headline_message_and_hint() -> None:
    err = CorruptRecordError("bad CRC at byte 40 of f.tfrecord", hint="use mode=DROPMALFORMED")
    assert err.render() == "Corrupt TFRecord: bad CRC at byte 40 of f.tfrecord\nuse mode=DROPMALFORMED"
    assert isinstance(err, errors.TFRecordError) and isinstance(err, errors.DataError)
