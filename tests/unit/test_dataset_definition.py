"""``@pipe.dataset``: the spec it registers, the options it refuses (naming the dataset and
the fix), and ``cv.checks``, which loads pandas only when first used."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import conveyor as cv
from conveyor.definition.datasets import DatasetSpec
from conveyor.errors import DefinitionError


def test_a_dataset_is_registered_and_returned_unchanged() -> None:
    pipe = cv.Pipeline("p")

    def weather() -> pd.DataFrame:
        return pd.DataFrame({"t": [1.0]})

    assert pipe.dataset(checks=[cv.checks.rows(min=1)])(weather) is weather
    spec = pipe.datasets["weather"]
    assert isinstance(spec, DatasetSpec) and spec.fn is weather and len(spec.checks) == 1
    assert len(spec.code_version) == 16
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_the_bare_decorator_has_no_checks_and_a_dataset_only_pipeline_validates() -> None:
    pipe = cv.Pipeline("p")

    @pipe.dataset
    def stations() -> pd.DataFrame:
        return pd.DataFrame({"s": ["a"]})

    assert pipe.datasets["stations"].checks == ()
    assert pipe.validate() is pipe


def test_a_pandera_schema_is_a_check() -> None:
    pa = pytest.importorskip("pandera.pandas")
    pipe = cv.Pipeline("p")

    @pipe.dataset(checks=[pa.DataFrameSchema({"t": pa.Column(float)})])
    def weather() -> pd.DataFrame:
        return pd.DataFrame({"t": [1.0]})

    assert len(pipe.datasets["weather"].checks) == 1


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        (["no_nulls"], "dataset 'weather': checks[0] is str"),
        ([lambda df: True], "checks[0] is function"),
        ("no_nulls", "checks must be a list of checks"),
    ],
)
def test_a_check_that_is_not_a_check_is_refused(checks: object, expected: str) -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError, match=r"use cv\.checks|e\.g\. checks=") as info:

        @pipe.dataset(checks=checks)
        def weather() -> pd.DataFrame: ...

    assert expected in str(info.value)


def test_a_dataset_with_parameters_or_an_unknown_option_is_refused() -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError, match=r"dataset 'weather' takes parameters \(day\)"):

        @pipe.dataset
        def weather(day: int) -> pd.DataFrame: ...

    with pytest.raises(DefinitionError, match="unknown option 'retries'"):
        pipe.dataset(retries=3)


def test_a_dataset_name_may_not_clash_with_a_step_or_resource() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def text(item: cv.Item) -> str:
        return "x"

    with pytest.raises(DefinitionError, match=r"dataset 'text' is defined twice .*already a step"):

        @pipe.dataset
        def text() -> pd.DataFrame: ...  # type: ignore[no-redef]

    @pipe.dataset
    def rows() -> pd.DataFrame: ...

    with pytest.raises(DefinitionError, match=r"step 'rows' is defined twice .*already a dataset"):

        @pipe.step
        def rows(item: cv.Item) -> int:  # type: ignore[no-redef]
            return 1


def test_checks_load_on_first_use_only() -> None:
    code = (
        "import sys, conveyor as cv\n"
        "assert 'pandas' not in sys.modules and 'conveyor.ml.checks' not in sys.modules\n"
        "assert 'checks' in dir(cv) and 'checks' in cv.__all__\n"
        "print(type(cv.checks.no_nulls()).__name__, 'pandas' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)  # fmt: skip
    assert result.stdout.split() == ["NoNulls", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = cv.nothing  # type: ignore[attr-defined]
