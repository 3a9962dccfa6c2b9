"""The column lists of the data contract live in sparktf.data.schema; readers take subsets of them."""

from __future__ import annotations

from sparktf.data.schema import EXAMPLE_COLUMNS, MODEL_COLUMNS, NOT_TRAINED_ON, TRAINING_COLUMNS


def test_the_training_columns_are_the_examples_less_split_and_time() -> None:
    assert set(TRAINING_COLUMNS) == set(EXAMPLE_COLUMNS) - set(NOT_TRAINED_ON)
    assert set(MODEL_COLUMNS) <= set(TRAINING_COLUMNS)


def test_evaluation_reads_only_contract_columns() -> None:
    from sparktf.evaluation import evalset

    assert set(evalset._EXAMPLE_COLUMNS) <= set(EXAMPLE_COLUMNS)
