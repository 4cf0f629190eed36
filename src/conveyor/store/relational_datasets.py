"""What the SQL ledgers keep of datasets: each version once, with its schema, profile, check
report and changes, as named queries on a :class:`~conveyor.store.dialect.SQLConnection`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.errors import DatasetNotFound, UsageError
from conveyor.store.dialect import SQLConnection
from conveyor.store.rows import DatasetRecord


def _record(row: Sequence[Any]) -> DatasetRecord:
    (name, version, pipeline, code_version, created_at, seen_at, rows, columns,
     schema, profile, report, changes, artifact) = row  # fmt: skip
    return DatasetRecord(
        name=name, version=version, pipeline=pipeline, code_version=code_version,
        created_at=float(created_at), seen_at=float(seen_at), rows=int(rows),
        columns=int(columns), schema=json.loads(schema), profile=json.loads(profile),
        report=json.loads(report), changes=json.loads(changes), artifact=artifact,
    )  # fmt: skip


class RelationalDatasets(SQLConnection):
    """Dataset versions in a SQL ledger."""

    def record_dataset(
        self,
        *,
        name: str,
        version: str,
        pipeline: str,
        code_version: str,
        rows: int,
        columns: int,
        schema: Mapping[str, str],
        profile: Mapping[str, Any],
        report: Mapping[str, Any],
        changes: Sequence[Mapping[str, Any]],
        artifact: str,
    ) -> bool:
        args = {
            "name": name, "version": version, "pipeline": pipeline,
            "code_version": code_version, "now": time.time(), "rows": rows,
            "columns": columns, "schema": json.dumps(dict(schema)),
            "profile": json.dumps(dict(profile)), "report": json.dumps(dict(report)),
            "changes": json.dumps([dict(c) for c in changes]), "artifact": artifact,
        }  # fmt: skip
        with self._write():
            known = self._execute("dataset_version_exists", args).fetchone()[0]
            self._execute("touch_dataset" if known else "insert_dataset", args)
        return not known

    def dataset_versions(self, name: str) -> list[DatasetRecord]:
        return [_record(row) for row in self._execute("dataset_versions", {"name": name})]

    def get_dataset(self, name: str, version: str | None = None) -> DatasetRecord:
        if version is None:
            found = self._execute("dataset_versions", {"name": name}).fetchone()
            if found is None:
                raise DatasetNotFound(self._missing(name, None))
            return _record(found)
        rows = self._execute("dataset_by_prefix", {"name": name, "prefix": version}).fetchall()
        if not rows:
            raise DatasetNotFound(self._missing(name, version))
        if len(rows) > 1:
            raise UsageError(
                f"dataset {name!r}: version {version!r} is the start of several versions "
                f"({rows[0][1][:12]}, {rows[1][1][:12]}, ...); give more of it"
            )
        return _record(rows[0])

    def dataset_names(self) -> list[str]:
        return [row[0] for row in self._execute("dataset_names")]

    def _missing(self, name: str, version: str | None) -> str:
        names = self.dataset_names()
        if name not in names:
            known = f"; it has {', '.join(names)}" if names else ""
            return (
                f"no dataset {name!r} in the ledger {self.location}{known}; build it with "
                f"'conveyor datasets build FILE.py {name}'"
            )
        return (
            f"dataset {name!r} has no version {version!r}; "
            f"'conveyor datasets list' shows its versions"
        )
