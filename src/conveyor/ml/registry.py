"""The model registry: immutable, numbered versions of each model with their lineage, and
aliases (``champion``, ``challenger``, any name) that move only by appending to their history.

    reg = cv.registry()                         # the ledger at .conveyor/conveyor.db
    model = reg.get("rain@champion").model      # loaded, its digest checked
    reg.promote("rain", 4, reason="better on the golden set")
    reg.rollback("rain")                        # champion back to its previous holder

An alias's history is a stack: a promotion pushes a version, a rollback pops the top one and
the alias returns to the version below it, so promote 1, 2, 3 then rollback, rollback leaves
it at 1, and one more rollback is refused. Every move records from, to, when, who (a user,
the gate or an alarm) and why; nothing in the registry is ever updated or deleted.

The versions live in the ledger (:class:`~conveyor.store.protocols.ModelRegistry`), their
bytes in the artifact store (:class:`~conveyor.ml.artifacts.ArtifactStore`) under their
SHA-256: a model whose bytes are missing or changed is refused, never loaded.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.definition.step import did_you_mean
from conveyor.errors import ArtifactCorrupt, InputError, ModelNotFound, UsageError
from conveyor.store import Store, open_store
from conveyor.store.rows import AliasMove, ModelExport, ModelSummary, ModelVersion

if TYPE_CHECKING:
    from conveyor.ml.artifacts import ArtifactStore

__all__ = ["CHALLENGER", "LoadedModel", "Registry", "parse_ref", "registry"]

#: What an alias may be called.
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: The name that always means the newest version, so it cannot be an alias.
LATEST = "latest"
#: The alias candidates wait at, gated or not (a training run points it at each model it
#: registers): moving it to a version that failed its gate overrides nothing, so needs no force.
CHALLENGER = "challenger"
#: Who may move an alias: a person, the gate of a training run, an alarm.
ACTORS = ("user", "gate", "alarm")
#: What a version may be: one model, or a model set (one model per group).
KINDS = {"model": "cloudpickle", "model_set": "model_set"}
#: The lineage keys that say what a version was trained on (``diff``'s "data").
DATA_KEYS = ("dataset", "data_version", "split", "golden")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_EXPORT_FORMAT = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split a model reference into its name and what follows the ``@``: ``"rain"`` is
    ``("rain", None)``, ``"rain@champion"`` ``("rain", "champion")``, ``"rain@3"``
    ``("rain", "3")``, ``"rain@latest"`` ``("rain", "latest")``."""
    if not isinstance(ref, str):
        raise UsageError(f"a model reference is a string such as 'rain@champion', not {ref!r}")
    name, at, tail = ref.strip().partition("@")
    if not name or any(c.isspace() for c in name) or (at and not tail) or "@" in tail:
        raise UsageError(
            f"model reference {ref!r}: write NAME, NAME@ALIAS, NAME@VERSION or NAME@latest "
            "(e.g. rain@champion or rain@3)"
        )
    if at and not (tail.isdigit() or ALIAS.fullmatch(tail)):
        raise UsageError(
            f"model reference {ref!r}: {tail!r} is neither a version number nor an alias "
            "(lowercase letters, digits, '_' and '-', starting with a letter)"
        )
    return name, tail if at else None


@dataclass(frozen=True)
class LoadedModel:
    """A registered version and its model, loaded and checked against its digest (a
    :class:`~conveyor.ml.groups.ModelSet` for a model set)."""

    record: ModelVersion
    model: Any


class Registry:
    """The registry in a ledger (a path, URL or open :class:`~conveyor.store.Store`; the
    default ``.conveyor/conveyor.db``), with the artifact store its models' bytes are in
    (default: where each version was registered from, else ``.conveyor/artifacts``)."""

    def __init__(
        self, store: str | Path | Store | None = None, artifacts: str | Path | None = None
    ) -> None:
        self._owned = not isinstance(store, Store)
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self._artifacts = None if artifacts is None else str(artifacts)
        self._places: dict[str, ArtifactStore] = {}

    def __repr__(self) -> str:
        return f"Registry({self.store.location!r})"

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store new bytes go to (the one given, else the default)."""
        return self._place(None)

    def close(self) -> None:
        """Close the ledger, if this registry opened it."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # versions ----------------------------------------------------------------------------------
    def register(
        self,
        *,
        name: str,
        artifact: str,
        kind: str = "model",
        format: str | None = None,
        run_id: str | None = None,
        lineage: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Mapping[str, float]] | None = None,
        gate: Mapping[str, Any] | None = None,
        passed: bool | None = None,
        members: int = 0,
    ) -> tuple[ModelVersion, bool]:
        """Register ``artifact`` (a digest in the artifact store) as the next version of model
        ``name`` and return it with True; if a version of ``name`` has this artifact already
        (a cached rerun), return that one with False. ``passed`` defaults to the gate's own
        verdict; the lineage records which artifact store holds the bytes."""
        if not isinstance(name, str) or not name or any(c.isspace() or c == "@" for c in name):
            raise UsageError(f"a model's name is a word without spaces or '@', not {name!r}")
        if kind not in KINDS:
            raise UsageError(f"model {name}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(artifact, str) or not _DIGEST.fullmatch(artifact):
            raise UsageError(
                f"model {name}: artifact {artifact!r} is not a digest (64 hex digits, as "
                "ArtifactStore.put_bytes returns)"
            )
        place = self._place(None)
        if not place.has(artifact):
            raise InputError(
                f"model {name}: artifact {artifact[:12]} is not in the artifact store "
                f"{place.location}; store it there first (or pass artifacts= where it is)"
            )
        if gate is not None and passed is None:
            passed = bool(gate.get("passed"))
        lineage = {**(lineage or {}), "artifacts": place.location}
        return self.store.register_model_version(
            name=name, kind=kind, artifact=artifact, format=format or KINDS[kind], run_id=run_id,
            lineage=lineage, metrics={k: dict(v) for k, v in (metrics or {}).items()},
            gate=None if gate is None else dict(gate), passed=passed, members=members,
        )  # fmt: skip

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``ref`` names: ``rain@champion`` (an alias), ``rain@3`` (a number),
        ``rain@latest`` or plain ``rain`` (the newest); ModelNotFound, naming the closest
        model or alias, if there is none."""
        name, tail = parse_ref(ref)
        return self._version_of(name, LATEST if tail is None else tail)

    def find(self, name: str, artifact: str) -> ModelVersion | None:
        """The version of ``name`` registered with ``artifact``, if any (a rerun's model)."""
        return self.store.model_version_of(name, artifact)

    def get(self, ref: str) -> LoadedModel:
        """The version ``ref`` names with its model loaded (see :meth:`load`)."""
        record = self.resolve(ref)
        return LoadedModel(record, self.load(record))

    def load(self, record: ModelVersion) -> Any:
        """The model of a registered version, unpickled after its bytes were checked against
        its digest (ArtifactCorrupt if they are missing or changed); a ModelSet for a set."""
        place = self._place(record)
        data = self._bytes(record, place)
        if record.kind == "model_set":
            from conveyor.ml.groups import load_model_set

            return load_model_set(place, record.artifact)
        import cloudpickle

        try:
            return cloudpickle.loads(data)
        except Exception as exc:
            raise InputError(
                f"cannot load {record.name} {record.version}: unpickling it failed "
                f"({type(exc).__name__}: {exc}); load it where the code and packages it was "
                f"trained with are installed ('conveyor models show {record.name} "
                f"{record.version}' lists them)"
            ) from exc

    def versions(self, name: str, limit: int = 50, offset: int = 0) -> list[ModelVersion]:
        """The versions of ``name``, the newest first."""
        return self.store.model_versions(name, limit=limit, offset=offset)

    def models(self) -> list[ModelSummary]:
        """Every registered model at a glance."""
        return self.store.models()

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of model ``name`` and the versions they point at."""
        self._require(name)
        return self.store.aliases(name)

    # aliases -----------------------------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: int | str,
        *,
        alias: str = "champion",
        reason: str = "",
        actor: str = "user",
        who: str | None = None,
        force: bool = False,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` of ``name`` (a number, or another alias: promote
        the challenger) and record the move. A version whose gate failed needs
        ``force=True`` (recorded), except to be the ``challenger``; the version the alias
        holds already is refused."""
        alias, actor = _alias(alias), _actor(actor)
        record = self._version_of(name, version)
        moves = self.store.alias_history(name, alias)
        current = moves[-1].to_version if moves else None
        if current == record.version:
            raise UsageError(
                f"{name} {record.version} holds alias {alias} already; nothing to move"
            )
        overrides = record.passed is False and alias != CHALLENGER
        if overrides and not force:
            raise UsageError(
                f"{name} {record.version} failed its gate{_failures(record.gate)}; promote it "
                "anyway with --force (force=True), which its history records"
            )
        return self.store.move_alias(
            name=name, alias=alias, seq=len(moves) + 1, from_version=current,
            to_version=record.version, action="promote", actor=actor, who=who or _login(),
            reason=reason, forced=overrides,
        )  # fmt: skip

    def rollback(
        self,
        name: str,
        *,
        alias: str = "champion",
        reason: str = "",
        actor: str = "user",
        who: str | None = None,
    ) -> AliasMove:
        """Move ``alias`` back to its previous holder (the version below the top of its
        history's stack) and record the move; UsageError if there is none."""
        alias, actor = _alias(alias), _actor(actor)
        moves = self._moves(name, alias)
        stack = holders(moves)
        if len(stack) < 2:
            raise UsageError(
                f"alias {alias} of {name} has no previous holder (it holds {stack[-1]}, the "
                f"first version it pointed at); promote another version instead"
            )
        return self.store.move_alias(
            name=name, alias=alias, seq=len(moves) + 1, from_version=stack[-1],
            to_version=stack[-2], action="rollback", actor=actor, who=who or _login(),
            reason=reason, forced=False,
        )  # fmt: skip

    def history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the aliases of ``name`` (or of one alias), the oldest first."""
        if alias is None:
            self._require(name)
            return self.store.alias_history(name)
        return self._moves(name, _alias(alias))

    # comparing and exporting -------------------------------------------------------------------
    def diff(self, name: str, v1: int | str, v2: int | str) -> dict[str, dict[str, list[Any]]]:
        """What differs between two versions of ``name`` (numbers or aliases), as
        ``{"params": {key: [before, after]}, "metrics": ..., "data": ..., "code": ...}``;
        a key is there only if its values differ."""
        a, b = self._version_of(name, v1), self._version_of(name, v2)
        la, lb = a.lineage, b.lineage
        return {
            "params": _changed(la.get("params") or {}, lb.get("params") or {}),
            "metrics": _changed(_flat(a.metrics), _flat(b.metrics)),
            "data": _changed(_flat({k: la.get(k) for k in DATA_KEYS}),
                             _flat({k: lb.get(k) for k in DATA_KEYS})),
            "code": _changed(la.get("code_versions") or {}, lb.get("code_versions") or {}),
        }  # fmt: skip

    def add_export(
        self,
        name: str,
        version: int | str,
        *,
        format: str,
        artifact: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelExport:
        """Record that ``version`` of ``name`` was exported to ``format`` (the exported bytes'
        digest, if in the artifact store, and what was measured, e.g. the parity)."""
        if not isinstance(format, str) or not _EXPORT_FORMAT.fullmatch(format):
            raise UsageError(f"an export's format is a short lowercase word, not {format!r}")
        record = self._version_of(name, version)
        return self.store.add_model_export(
            name=name, version=record.version, format=format, artifact=artifact,
            details=dict(details or {}),
        )  # fmt: skip

    def exports(self, name: str, version: int | str) -> list[ModelExport]:
        """The exports of a version, the oldest first."""
        record = self._version_of(name, version)
        return self.store.model_exports(name, record.version)

    # helpers -----------------------------------------------------------------------------------
    def _require(self, name: str) -> ModelVersion:
        """The newest version of ``name``; ModelNotFound (with the closest name) if none."""
        return self.store.model_versions(name, limit=1)[0]

    def _version_of(self, name: str, version: int | str) -> ModelVersion:
        if isinstance(version, bool):
            raise UsageError(f"model {name}: a version is a number or an alias, not {version!r}")
        if isinstance(version, int):
            return self.store.model_version(name, version)
        text = str(version).strip()
        if text.isdigit():
            return self.store.model_version(name, int(text))
        if text == LATEST:
            return self._require(name)
        found = self.store.aliases(name)
        if text in found:
            return self.store.model_version(name, found[text])
        self._require(name)  # an unknown model is named as such first
        if not ALIAS.fullmatch(text):
            raise UsageError(
                f"model {name}: {text!r} is neither a version number nor an alias (lowercase "
                "letters, digits, '_' and '-', starting with a letter)"
            )
        raise ModelNotFound(_unknown_alias(name, text, found))

    def _moves(self, name: str, alias: str) -> list[AliasMove]:
        moves = self.store.alias_history(name, alias)
        if not moves:
            self._require(name)
            raise ModelNotFound(_unknown_alias(name, alias, self.store.aliases(name)))
        return moves

    def _place(self, record: ModelVersion | None) -> ArtifactStore:
        from conveyor.ml.artifacts import ArtifactStore

        where = self._artifacts
        if where is None and record is not None:
            stored = record.lineage.get("artifacts")
            where = stored if isinstance(stored, str) else None
        key = where or ""
        if key not in self._places:
            self._places[key] = ArtifactStore(where)
        return self._places[key]

    @staticmethod
    def _bytes(record: ModelVersion, place: ArtifactStore) -> bytes:
        what = f"refusing to load {record.name} {record.version}: its artifact {record.artifact}"
        try:
            return place.get_bytes(record.artifact)
        except InputError as exc:
            if place.has(record.artifact):
                raise ArtifactCorrupt(
                    f"{what} in {place.location} is corrupted (hash mismatch): it changed after "
                    f"it was stored; train the model again to register a sound version"
                ) from exc
            raise ArtifactCorrupt(
                f"{what} is missing from {place.location}; pass the artifact store it was "
                f"stored in (--artifacts), or train the model again"
            ) from exc
        except OSError as exc:
            raise ArtifactCorrupt(f"{what} in {place.location} cannot be read: {exc}") from exc


def registry(
    store: str | Path | Store | None = None, artifacts: str | Path | None = None
) -> Registry:
    """The model registry in ``store`` (default ``.conveyor/conveyor.db``), reading models from
    ``artifacts`` (default: where each was registered from): ``cv.registry()``."""
    return Registry(store, artifacts)


def holders(moves: Sequence[AliasMove]) -> list[int]:
    """The stack an alias's history (oldest move first) leaves: a promotion pushes its
    version, a rollback pops back to the version below; the top is the alias's holder."""
    stack: list[int] = []
    for move in moves:
        if move.action == "rollback" and stack:
            stack.pop()
            if not stack or stack[-1] != move.to_version:
                stack.append(move.to_version)  # a history written by other means: trust it
        else:
            stack.append(move.to_version)
    return stack


def _alias(alias: str) -> str:
    if alias == LATEST:
        raise UsageError(
            f"alias {LATEST!r} is reserved: it always means the newest version; choose another "
            "name (e.g. champion, challenger, staging)"
        )
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias):
        raise UsageError(
            f"alias {alias!r}: an alias is 1 to 64 lowercase letters, digits, '_' or '-', "
            "starting with a letter (e.g. champion)"
        )
    return alias


def _actor(actor: str) -> str:
    if actor not in ACTORS:
        raise UsageError(f"actor {actor!r} is not one of {', '.join(ACTORS)}")
    return actor


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a user entry)
        return "unknown"


def _unknown_alias(name: str, alias: str, known: Mapping[str, int]) -> str:
    held = f"; its aliases are {', '.join(sorted(known))}" if known else "; it has no aliases yet"
    return (
        f"model {name!r} has no alias {alias!r}{did_you_mean(alias, known)}{held}; point one "
        f"at a version with 'conveyor models promote {name} VERSION --alias {alias}'"
    )


def _failures(gate: Mapping[str, Any] | None) -> str:
    """`` (rule on roc_auc: noise)``: the rules and checks that failed, for a message."""
    failed = []
    for rule in (gate or {}).get("rules") or []:
        if rule.get("passed") is False:
            checks = [k for k, v in (rule.get("checks") or {}).items() if v is False]
            failed.append(f"{rule.get('metric')}: {', '.join(checks) or 'failed'}")
    return f" ({'; '.join(failed)})" if failed else ""


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by dots: {"valid": {"rmse": 1}} is
    {"valid.rmse": 1}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    keys = list(before) + [k for k in after if k not in before]
    return {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}
