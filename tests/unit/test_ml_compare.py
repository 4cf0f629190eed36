"""Comparing two versions of a dataset: schema changes and moved distributions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conveyor.errors import DefinitionError
from conveyor.ml.compare import Change, compare, jensen_shannon, noise_floor, psi
from conveyor.ml.datasets import profile

RNG = np.random.default_rng(7)
N = 20_000


def base() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": RNG.normal(size=N),
            "k": RNG.choice(["a", "b", "c"], N),
            "n": RNG.integers(0, 5, N),
            "t": pd.date_range("2000-01-01", periods=N, freq="h"),
        }
    )


def test_the_same_distribution_does_not_move() -> None:
    assert compare(profile(base()), profile(base())) == []


def test_added_removed_and_retyped_columns() -> None:
    old = base()
    new = old.drop(columns=["k"]).assign(extra=1, n=old["n"].astype(float))
    changes = compare(profile(old), profile(new))
    assert [(c.kind, c.column, c.before, c.after) for c in changes] == [
        ("removed", "k", "string", None),
        ("retyped", "n", "int", "float"),
        ("added", "extra", None, "int"),
    ]


def test_a_moved_number_a_moved_category_and_more_nulls_are_drifts() -> None:
    old = base()
    new = base()
    new["x"] = RNG.normal(0.5, 1.0, N)
    new["k"] = RNG.choice(["a", "b", "d"], N)
    new["n"] = new["n"].where(RNG.random(N) > 0.3)  # 30% nulls: pandas turns it float
    new["n"] = new["n"].astype("Int64")
    changes = {c.column: c for c in compare(profile(old), profile(new))}
    assert set(changes) == {"x", "k", "n"}  # the time column moves by nature: not compared
    assert changes["x"].kind == "drifted" and changes["x"].score is not None
    assert changes["x"].score > 0.1
    assert "jensen_shannon" in changes["x"].message


def test_values_beyond_the_reference_range_count_in_its_end_bins() -> None:
    old = pd.DataFrame({"x": RNG.normal(size=N)})
    shifted = pd.DataFrame({"x": RNG.normal(size=N) + 10})
    [change] = compare(profile(old), profile(shifted))
    # all of it in the reference's last bin (a tenth of the reference): far, not at 1
    expected = jensen_shannon(np.r_[np.full(10, 0.1), 0.0], np.r_[np.zeros(9), 1.0, 0.0])
    assert change.score == pytest.approx(expected, abs=0.01)


def test_a_small_table_does_not_flag_noise() -> None:
    small = 200
    a = pd.DataFrame({"x": RNG.normal(size=small)})
    b = pd.DataFrame({"x": RNG.normal(size=small)})
    assert compare(profile(a), profile(b)) == []
    assert noise_floor(11, small, small) > 0.1 > noise_floor(11, 100_000, 100_000)


def test_psi_as_the_metric_and_bad_arguments() -> None:
    old, new = base(), base().assign(x=lambda d: d["x"] + 1)
    assert [c.column for c in compare(profile(old), profile(new), metric="psi")] == ["x"]
    with pytest.raises(DefinitionError, match="threshold must be a number > 0"):
        compare(profile(old), profile(new), threshold=0)
    with pytest.raises(DefinitionError, match="metric is 'jensen_shannon' or 'psi'"):
        compare(profile(old), profile(new), metric="ks")  # type: ignore[arg-type]


def test_the_distances() -> None:
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert jensen_shannon(p, q) == pytest.approx(jensen_shannon(q, p))
    assert np.isfinite(psi(p, q)) and psi(p, p) == 0.0


def test_all_null_and_empty_columns_compare_by_their_null_share() -> None:
    old = pd.DataFrame({"x": [1.0, 2.0, 3.0] * 100})
    new = pd.DataFrame({"x": [np.nan] * 300})
    [change] = compare(profile(old), profile(new))
    assert change.kind == "drifted" and change.score == pytest.approx(1.0)


def test_a_change_round_trips_through_json() -> None:
    change = compare(profile(base()), profile(base().drop(columns=["x"])))[0]
    assert Change.from_dict(json.loads(json.dumps(change.to_dict()))) == change
