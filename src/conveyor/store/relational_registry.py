"""What the SQL ledgers keep of the model registry: immutable versions, the append-only
history of every alias and the exports of a version, as named queries on a
:class:`~conveyor.store.dialect.SQLConnection`.

Nothing here updates or deletes a row. A version's number is the next free one, taken in the
same transaction as the insert; a move of an alias takes the next place (``seq``) in the
alias's history. Both inserts do nothing when a concurrent writer took the place first (a
unique key: ``(name, version)``, ``(name, alias, seq)``), which the writer learns from the
count of rows written: the version is numbered again, the move refused with
:class:`~conveyor.errors.AliasConflict`. The same holds on SQLite (whose writers queue) and
on PostgreSQL (where two processes may read the same last number at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.definition.step import did_you_mean
from conveyor.errors import AliasConflict, ModelNotFound, StoreError, UsageError
from conveyor.store.dialect import SQLConnection
from conveyor.store.rows import AliasMove, ModelExport, ModelSummary, ModelVersion

#: How many times a registration is numbered again after concurrent writers took its number.
_NUMBERING_ATTEMPTS = 100


def _version(row: Sequence[Any]) -> ModelVersion:
    (name, version, kind, artifact, format, created_at, run_id, lineage, metrics, gate,
     passed, members) = row  # fmt: skip
    return ModelVersion(
        name=name, version=int(version), kind=kind, artifact=artifact, format=format,
        created_at=float(created_at), run_id=run_id, lineage=json.loads(lineage),
        metrics=json.loads(metrics), gate=None if gate is None else json.loads(gate),
        passed=None if passed is None else bool(passed), members=int(members),
    )  # fmt: skip


def _move(row: Sequence[Any]) -> AliasMove:
    (name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at) = row
    return AliasMove(
        name=name, alias=alias, seq=int(seq),
        from_version=None if from_version is None else int(from_version),
        to_version=int(to_version), action=action, actor=actor, who=who, reason=reason,
        forced=bool(forced), at=float(at),
    )  # fmt: skip


def _export(row: Sequence[Any]) -> ModelExport:
    name, version, format, artifact, details, at = row
    return ModelExport(name=name, version=int(version), format=format, artifact=artifact,
                       details=json.loads(details), at=float(at))  # fmt: skip


def _json(value: Any) -> str:
    return json.dumps(value, default=str)  # in the order given: the CLI shows it so


class RelationalRegistry(SQLConnection):
    """The model registry in a SQL ledger."""

    # versions ----------------------------------------------------------------------------------
    def register_model_version(
        self,
        *,
        name: str,
        kind: str,
        artifact: str,
        format: str,
        run_id: str | None,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Mapping[str, float]],
        gate: Mapping[str, Any] | None,
        passed: bool | None,
        members: int,
    ) -> tuple[ModelVersion, bool]:
        args: dict[str, Any] = {
            "name": name, "kind": kind, "artifact": artifact, "format": format,
            "run_id": run_id, "lineage": _json(dict(lineage)),
            "metrics": _json({k: dict(v) for k, v in metrics.items()}),
            "gate": None if gate is None else _json(dict(gate)),
            "passed": None if passed is None else bool(passed), "members": int(members),
        }  # fmt: skip
        with self._write():
            for _ in range(_NUMBERING_ATTEMPTS):
                found = self._execute("model_version_by_artifact", args).fetchone()
                if found is not None:
                    return _version(found), False
                args["version"] = int(self._execute("next_model_version", args).fetchone()[0])
                args["now"] = time.time()
                if self._execute("insert_model_version", args).rowcount == 1:
                    break
                # A concurrent writer (PostgreSQL) took this number or registered this
                # artifact and committed meanwhile: look again.
            else:
                raise StoreError(
                    f"could not number a new version of model {name!r} in {self.location}: "
                    f"{_NUMBERING_ATTEMPTS} concurrent registrations took every number first; "
                    "try again"
                )
            row = self._execute("model_version", args).fetchone()
        return _version(row), True

    def model_version(self, name: str, version: int) -> ModelVersion:
        row = self._execute("model_version", {"name": name, "version": int(version)}).fetchone()
        if row is None:
            raise ModelNotFound(self._missing_model(name, version))
        return _version(row)

    def model_versions(self, name: str, *, limit: int = 50, offset: int = 0) -> list[ModelVersion]:
        if limit < 0 or offset < 0:
            raise UsageError(f"limit {limit} and offset {offset} must not be negative")
        cursor = self._execute("model_versions", {"name": name, "limit": limit, "offset": offset})
        found = [_version(row) for row in cursor]
        if not found and not offset and limit:
            raise ModelNotFound(self._missing_model(name, None))
        return found

    def models(self) -> list[ModelSummary]:
        heads: dict[str, dict[str, int]] = {}
        moved: dict[str, float] = {}
        for name, alias, to_version, at in self._execute("alias_heads"):
            heads.setdefault(name, {})[alias] = int(to_version)
            moved[name] = max(moved.get(name, 0.0), float(at))
        summaries = []
        for name, kind, versions, latest, updated in self._execute("model_summaries"):
            summary = ModelSummary(
                name=name, kind=kind, versions=int(versions), latest=int(latest),
                updated_at=max(float(updated), moved.get(name, 0.0)), aliases=heads.get(name, {}),
            )  # fmt: skip
            summaries.append(summary)
        return summaries

    # aliases -----------------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        return {alias: int(v) for alias, v in self._execute("model_aliases", {"name": name})}

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        if alias is None:
            return [_move(row) for row in self._execute("model_history", {"name": name})]
        cursor = self._execute("alias_history", {"name": name, "alias": alias})
        return [_move(row) for row in cursor]

    def move_alias(
        self,
        *,
        name: str,
        alias: str,
        seq: int,
        from_version: int | None,
        to_version: int,
        action: str,
        actor: str,
        who: str,
        reason: str,
        forced: bool,
    ) -> AliasMove:
        args = {
            "name": name, "alias": alias, "seq": int(seq), "from_version": from_version,
            "to_version": int(to_version), "action": action, "actor": actor, "who": who,
            "reason": reason, "forced": bool(forced),
        }  # fmt: skip
        with self._write():
            self.model_version(name, to_version)  # a version of another model: ModelNotFound
            last = self._execute("last_alias_move", args).fetchone()
            top = None if last is None else _move(last)
            if top is not None and seq <= top.seq:
                raise self._conflict(top if seq == top.seq else self._move_at(name, alias, seq))
            expected = (1, None) if top is None else (top.seq + 1, top.to_version)
            if (seq, from_version) != expected:
                raise UsageError(
                    f"alias {alias} of {name}: move {seq} from {from_version} does not follow "
                    f"its history (the next move is {expected[0]}, from {expected[1]})"
                )
            args["now"] = time.time()
            if self._execute("insert_alias_move", args).rowcount == 1:
                return _move(self._execute("alias_move", args).fetchone())
        # A concurrent move (PostgreSQL) committed this place first; its row is there now.
        raise self._conflict(self._move_at(name, alias, seq))

    def _move_at(self, name: str, alias: str, seq: int) -> AliasMove:
        row = self._execute("alias_move", {"name": name, "alias": alias, "seq": seq}).fetchone()
        return _move(row)

    @staticmethod
    def _conflict(move: AliasMove) -> AliasConflict:
        return AliasConflict(
            f"alias {move.alias} of {move.name} moved meanwhile (to {move.to_version} by "
            f"{move.who}); look at 'conveyor models history {move.name}' and try again"
        )

    # exports -----------------------------------------------------------------------------------
    def add_model_export(
        self,
        *,
        name: str,
        version: int,
        format: str,
        artifact: str | None,
        details: Mapping[str, Any],
    ) -> ModelExport:
        export = ModelExport(name=name, version=int(version), format=format, artifact=artifact,
                             details=json.loads(_json(dict(details))), at=time.time())  # fmt: skip
        args = {**export.to_dict(), "details": _json(export.details), "now": export.at}
        with self._write():
            self.model_version(name, version)
            self._execute("insert_model_export", args)
        return export

    def model_exports(self, name: str, version: int) -> list[ModelExport]:
        cursor = self._execute("model_exports", {"name": name, "version": int(version)})
        return [_export(row) for row in cursor]

    # messages ----------------------------------------------------------------------------------
    def _missing_model(self, name: str, version: int | None) -> str:
        count, first, last = self._execute("model_range", {"name": name}).fetchone()
        if not count:
            names = [row[0] for row in self._execute("model_names")]
            known = did_you_mean(name, names) or (
                f"; it has {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
                if names
                else "; it has none yet"
            )
            return (
                f"no model {name!r} in the registry of {self.location}{known}; register one "
                f"with 'conveyor train' ('conveyor models list' lists them)"
            )
        held = f"version {first}" if count == 1 else f"versions {first} to {last}"
        return (
            f"model {name!r} has no version {version}: it has {held}; "
            f"'conveyor models show {name}' shows the latest"
        )
