"""The bench pipeline of ``bench/ml.py``: the shared objective (``_ml_objective.py``) as a
Conveyor model and metric, searched by ``conveyor.ml.training.train`` or ``conveyor train``::

    conveyor train bench/_ml_pipeline.py --input digits.csv --trials 200 --workers 2
"""

from __future__ import annotations

from typing import Any

import _ml_objective as objective
import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("mlbench")

SPACE = {name: cv.search.log(low, high) for name, low, high in objective.LOG_PARAMS}
SPACE["learning_rate"] = cv.search.choice(list(objective.LEARNING_RATES))


@pipe.model(metric="accuracy", direction="maximize", trials=200, search=SPACE)
def sgd(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    """The objective's classifier, fitted on the train split."""
    return objective.fit(train, params)


@pipe.metric
def accuracy(sgd: Any, valid: pd.DataFrame) -> float:
    """Accuracy on the valid split."""
    return objective.accuracy(sgd, valid)
