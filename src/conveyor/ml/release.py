"""After a search: the best trial's model is the challenger. It is scored against the champion
on the pinned golden split by the model's gate, registered as a new immutable version with its
lineage and verdict, given the ``challenger`` alias, and (when asked and the gate passes)
promoted to ``champion``. A rerun that finds the same model registered registers nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from conveyor.definition.models import MetricSpec, ModelSpec, gate_policy, metric_value
from conveyor.errors import ModelNotFound
from conveyor.ml.registry import CHALLENGER
from conveyor.ml.tables import Table

__all__ = ["CHALLENGER", "CHAMPION", "Release", "golden_scores", "release", "release_model_set"]

if TYPE_CHECKING:
    from conveyor.ml.gate import Verdict
    from conveyor.ml.registry import Registry
    from conveyor.store.rows import AliasMove, ModelExport, ModelVersion

#: The alias the gate promotes to and serving answers with.
CHAMPION = "champion"


@dataclass(frozen=True)
class Release:
    """What :func:`release` did: the version (new, or the one registered before with the same
    model), the gate's verdict on it, and the alias moves and export it made."""

    version: ModelVersion
    created: bool
    verdict: Verdict | None
    promoted: AliasMove | None = None
    challenger: AliasMove | None = None
    export: ModelExport | None = None
    #: Why the version was not promoted although asked (None when it was, or not asked).
    held_back: str | None = None

    @property
    def passed(self) -> bool | None:
        """The gate's verdict on the version (None when it was not gated)."""
        return self.version.passed


def golden_scores(
    metrics: Sequence[MetricSpec], model: object, golden: Table,
    known: Mapping[str, float] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Every metric of the model on the golden table; those in ``known`` (the gate's own
    scores of the same model on the same table) are not computed again."""
    known = known or {}
    return {
        m.name: known[m.name] if m.name in known
        else metric_value(m, m.fn(**{m.model: model, "valid": golden}))
        for m in metrics
    }  # fmt: skip


def release(
    registry: Registry,
    spec: ModelSpec,
    metrics: Sequence[MetricSpec],
    *,
    model: object,
    artifact: str,
    lineage: Mapping[str, Any],
    valid: Mapping[str, float],
    golden: Table | None,
    run_id: str,
    promote: bool = False,
) -> Release:
    """Gate, register and alias the challenger ``model`` (stored under ``artifact``)."""
    from conveyor.ml.gate import evaluate

    found = registry.find(spec.name, artifact)
    if found is not None:
        return _aliases(registry, spec, found, False, None, run_id, promote)
    verdict = None
    scores: dict[str, float] = {}
    if golden is not None:
        champion, champion_model = _champion(registry, spec.name)
        golden_info = lineage.get("golden") or {}
        verdict = evaluate(
            gate_policy(spec), metrics, model,
            champion_model, golden, label=spec.label,
            champion_version=None if champion is None else champion.version,
            golden_version=str(golden_info.get("version", "")),
            champion_golden=None if champion is None else _golden_version(champion),
        )  # fmt: skip
        gated = {rule.metric: rule.challenger for rule in verdict.rules}
        scores = golden_scores(metrics, model, golden, gated)
    record, created = registry.register(
        name=spec.name, kind="model", artifact=artifact, format=str(lineage["format"]),
        run_id=run_id, lineage=dict(lineage),
        metrics={"valid": dict(valid), "golden": scores},
        gate=None if verdict is None else verdict.as_dict(),
        passed=None if verdict is None else verdict.passed, members=0,
    )  # fmt: skip
    done = _aliases(registry, spec, record, created, verdict, run_id, promote)
    if created and spec.export == "onnx" and golden is not None:
        from conveyor.ml.export import export_after_training

        return replace(done, export=export_after_training(registry, record, model, golden))
    return done


def _aliases(
    registry: Registry, spec: ModelSpec, record: ModelVersion, created: bool,
    verdict: Verdict | None, run_id: str, promote: bool,
) -> Release:  # fmt: skip
    held = registry.aliases(spec.name)
    moved = None
    if held.get(CHALLENGER) != record.version:
        moved = registry.promote(
            spec.name, record.version, alias=CHALLENGER, actor="gate", who=run_id,
            reason=f"trained in run {run_id}",
        )  # fmt: skip
    promoted = held_back = None
    champion = held.get(CHAMPION)
    if promote and record.passed is not False and champion != record.version:
        held_back = _stale(record, champion)
        if held_back is None:
            promoted = registry.promote(
                spec.name, record.version, alias=CHAMPION, actor="gate", who=run_id,
                reason=verdict.summary() if verdict is not None else "not gated",
            )  # fmt: skip
    return Release(record, created, verdict, promoted, moved, held_back=held_back)


def _stale(record: ModelVersion, champion: int | None) -> str | None:
    """Why a version found again (a cached rerun) may not be promoted: its verdict judged it
    against another champion than today's (None when the verdict still holds)."""
    if record.gate is None:
        return None  # not gated (no golden split): nothing to hold it to
    judged = record.gate.get("champion")
    if judged == champion:
        return None
    against = "no champion" if judged is None else f"champion {judged}"
    return (
        f"{record.name} {record.version} was gated against {against}, and the champion is "
        f"{champion} now: its verdict no longer holds, so it was not promoted; promote it "
        f"with 'conveyor models promote {record.name} {record.version}' if you mean to"
    )


def _champion(registry: Registry, name: str) -> tuple[ModelVersion | None, object | None]:
    try:
        loaded = registry.get(f"{name}@{CHAMPION}")
    except ModelNotFound:
        return None, None
    return loaded.record, loaded.model


def _golden_version(record: ModelVersion) -> str | None:
    gate = record.gate or {}
    golden = gate.get("golden") or record.lineage.get("golden") or {}
    version = golden.get("version")
    return None if version is None else str(version)


def release_model_set(
    registry: Registry, model: str, index_digest: str, index: Mapping[str, Any], *,
    run_id: str, promote: bool = False,
) -> Release:  # fmt: skip
    """Register a model set (its index under ``index_digest``) as a version of ``model``; with
    ``promote`` make it the champion when every group has a model. Model sets are not gated:
    they have no golden split (each group's valid metrics are in the index)."""
    groups: Mapping[str, Any] = index.get("groups") or {}
    metric = str(index.get("metric", ""))
    values = sorted(float(g["metrics"][metric]) for g in groups.values() if metric in g["metrics"])
    valid = {}
    if values:
        valid = {f"{metric} median": values[len(values) // 2], f"{metric} min": values[0],
                 f"{metric} max": values[-1]}  # fmt: skip
    lineage = {
        "model": model, "format": "model_set", "data_version": index.get("data_version"),
        "group_by": index.get("group_by"), "buckets": index.get("buckets"),
        "code_versions": index.get("code_versions"), "settings": index.get("settings"),
        "missing": index.get("missing"), "complete": index.get("complete"), "run_id": run_id,
    }  # fmt: skip
    record, created = registry.register(
        name=model, kind="model_set", artifact=index_digest, format="model_set", run_id=run_id,
        lineage=lineage, metrics={"valid": valid}, gate=None, passed=None, members=len(groups),
    )  # fmt: skip
    held = registry.aliases(model)
    promoted = None
    if promote and index.get("complete") and held.get(CHAMPION) != record.version:
        promoted = registry.promote(
            model, record.version, alias=CHAMPION, actor="gate", who=run_id,
            reason=f"model set of {len(groups)} groups, every group trained (not gated)",
        )  # fmt: skip
    return Release(record, created, None, promoted)
