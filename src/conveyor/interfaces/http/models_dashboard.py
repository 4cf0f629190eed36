"""The dashboard's model registry: its JSON API under ``/dashboard/api/models`` (models, their
versions with lineage, metrics, the gate's verdict and exports, the aliases' history) and the
two actions on an alias, promote and rollback, made through
:class:`~conveyor.ml.registry.Registry` as user ``dashboard``; and the page's views of them
(``/dashboard/models...``, the same single page).

Every list is paged or bounded, model names in paths are checked (no path characters), and
the registry's refusals come back as the app's problems: an unknown model or version 404, an
alias that moved meanwhile 409, a refused move 422."""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from conveyor.errors import AliasConflict, ConveyorError, ModelNotFound
from conveyor.interfaces.http.auth import Public
from conveyor.interfaces.http.dashboard import MAX_PAGE, PREFIX, Dash, DashboardState, page
from conveyor.interfaces.http.schemas import SafeJSONResponse, error_responses, problem

if TYPE_CHECKING:
    from conveyor.store import Store
    from conveyor.store.rows import AliasMove, ModelSummary, ModelVersion

#: A model's name in a path: letters, digits, ``_``, ``.`` and ``-``, never a path character.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
#: An alias, as the registry spells them.
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
#: The most characters a reason given on the page may have.
MAX_REASON = 2000
#: Who the registry records for a move made on the page.
WHO = "dashboard"
#: The model pages carry no ledger data: open without the token, as the run pages are.
PUBLIC = Public(frozenset({f"{PREFIX}/models"}), (f"{PREFIX}/models/",))
T = TypeVar("T")

Name = Annotated[str, Path(pattern=NAME_PATTERN, description="the model's name")]
Version = Annotated[int, Path(ge=1, le=2**62, description="the version's number")]

#: The model API and pages (mounted under :data:`~.dashboard.PREFIX`).
router = APIRouter(default_response_class=SafeJSONResponse)
router.add_api_route("/models", page, methods=["GET"], include_in_schema=False)
router.add_api_route("/models/{name}", page, methods=["GET"], include_in_schema=False)
router.add_api_route("/models/{name}/{version}", page, methods=["GET"], include_in_schema=False)


class PromoteRequest(BaseModel):
    """Move ``alias`` to ``version`` (``force`` when its gate failed). ``seen`` is the number
    of the alias's last move the page showed (0: none): when it moved since, 409."""

    version: int = Field(ge=1, le=2**62)
    alias: str = Field(default="champion", pattern=ALIAS_PATTERN)
    reason: str = Field(default="", max_length=MAX_REASON)
    force: bool = False
    seen: int | None = Field(default=None, ge=0)


class RollbackRequest(BaseModel):
    """Move ``alias`` back to its previous holder (``seen`` as for a promotion)."""

    alias: str = Field(default="champion", pattern=ALIAS_PATTERN)
    reason: str = Field(default="", max_length=MAX_REASON)
    seen: int | None = Field(default=None, ge=0)


@router.get("/api/models", responses=error_responses(401, 422))
def models(
    dash: Dash,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """Every registered model at a glance (by name): kind, versions, latest, aliases."""
    found = dash.ledger.read(lambda s: s.models())
    found = sorted(found, key=lambda m: m.name)
    page_ = found[offset : offset + limit]
    return {"models": [asdict(m) for m in page_], "total": len(found), "offset": offset,
            "limit": limit, "more": offset + limit < len(found), "now": time.time()}  # fmt: skip


@router.get("/api/models/{name}", responses=error_responses(401, 404, 422))
def model(
    dash: Dash,
    name: Name,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 25,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """A model: its summary, each alias with its holder, last move and rollback target, and
    one page of its versions, newest first (each with its key metric and gate verdict)."""

    def read(s: Store) -> dict[str, Any]:
        summary = _summary(s, name)
        versions = s.model_versions(name, limit=limit + 1, offset=offset)
        moves = s.alias_history(name)
        return {
            "model": asdict(summary),
            "aliases": _aliases(s.aliases(name), moves),
            "versions": [_row(v, summary.aliases) for v in versions[:limit]],
            "offset": offset, "limit": limit, "more": len(versions) > limit,
            "now": time.time(),
        }  # fmt: skip

    return _answer(dash, read)


@router.get("/api/models/{name}/versions/{version}", responses=error_responses(401, 404, 422))
def version(dash: Dash, name: Name, version: Version) -> Any:
    """One version in full: lineage (data, split, golden set, parameters, code and package
    versions, training run), metrics on valid and golden, the gate's table, its exports and
    the aliases it holds."""

    def read(s: Store) -> dict[str, Any]:
        record = s.model_version(name, version)
        held = sorted(a for a, v in s.aliases(name).items() if v == version)
        exports = [asdict(e) for e in s.model_exports(name, version)]
        latest = _summary(s, name).latest
        return {**asdict(record), "metric": key_metric(record), "aliases": held,
                "exports": exports, "latest": latest, "now": time.time()}  # fmt: skip

    return _answer(dash, read)


@router.get("/api/models/{name}/history", responses=error_responses(401, 404, 422))
def history(
    dash: Dash,
    name: Name,
    alias: Annotated[str | None, Query(pattern=ALIAS_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
) -> Any:
    """The moves of the model's aliases (of ``alias`` only when given), oldest first: the
    latest ``limit`` of them."""

    def read(s: Store) -> dict[str, Any]:
        _summary(s, name)
        moves = s.alias_history(name, alias)
        shown = moves[-limit:]
        return {"moves": [asdict(m) for m in shown], "total": len(moves),
                "more": len(moves) > len(shown), "now": time.time()}  # fmt: skip

    return _answer(dash, read)


@router.post("/api/models/{name}/promote", responses=error_responses(401, 404, 409, 422))
def promote(dash: Dash, name: Name, body: PromoteRequest) -> Any:
    """Move an alias to a version, recorded as the user ``dashboard`` with the reason given;
    a version whose gate failed needs ``force``."""

    def act(s: Store) -> AliasMove:
        from conveyor.ml.registry import Registry

        _summary(s, name)
        _check_seen(s, name, body.alias, body.seen)
        return Registry(s).promote(name, body.version, alias=body.alias, reason=body.reason,
                                   actor="user", who=WHO, force=body.force)  # fmt: skip

    return _move(dash, act)


@router.post("/api/models/{name}/rollback", responses=error_responses(401, 404, 409, 422))
def rollback(dash: Dash, name: Name, body: RollbackRequest | None = None) -> Any:
    """Move an alias back to its previous holder, recorded as the user ``dashboard``."""
    wanted = body or RollbackRequest()

    def act(s: Store) -> AliasMove:
        from conveyor.ml.registry import Registry

        _summary(s, name)
        _check_seen(s, name, wanted.alias, wanted.seen)
        return Registry(s).rollback(name, alias=wanted.alias, reason=wanted.reason,
                                    actor="user", who=WHO)  # fmt: skip

    return _move(dash, act)


def key_metric(record: ModelVersion) -> dict[str, Any]:
    """The version's key metric and its values on valid and golden: the model's own metric
    (from its lineage), else the gate's first rule's, else the first one recorded."""
    lineage = record.lineage or {}
    rules = (record.gate or {}).get("rules") or []
    valid = (record.metrics or {}).get("valid") or {}
    golden = (record.metrics or {}).get("golden") or {}
    candidates = [lineage.get("metric"), rules[0].get("metric") if rules else None,
                  *golden, *valid]  # fmt: skip
    name = next((c for c in candidates if isinstance(c, str) and c), None)
    return {"name": name, "valid": valid.get(name) if name else None,
            "golden": golden.get(name) if name else None}  # fmt: skip


def rollback_targets(moves: Sequence[AliasMove]) -> dict[str, int | None]:
    """Where a rollback of each alias would go: the version below the top of its history's
    stack (:func:`~conveyor.ml.registry.holders`); None when there is none."""
    from conveyor.ml.registry import holders

    by_alias: dict[str, list[AliasMove]] = {}
    for move in moves:
        by_alias.setdefault(move.alias, []).append(move)
    stacks = {alias: holders(mine) for alias, mine in by_alias.items()}
    return {alias: stack[-2] if len(stack) > 1 else None for alias, stack in stacks.items()}


def _summary(s: Store, name: str) -> ModelSummary:
    found = {m.name: m for m in s.models()}
    if name in found:
        return found[name]
    close = difflib.get_close_matches(name, list(found), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else (
        "; register one with 'conveyor train'" if not found else
        f"; the registry has {', '.join(sorted(found)[:10])}")  # fmt: skip
    raise ModelNotFound(f"no model {name!r} in the registry{hint}")


def _aliases(current: dict[str, int], moves: Sequence[AliasMove]) -> list[dict[str, Any]]:
    targets = rollback_targets(moves)
    last: dict[str, AliasMove] = {m.alias: m for m in moves}
    out = []
    for alias in sorted(current):
        move = last.get(alias)
        out.append({"alias": alias, "version": current[alias],
                    "seq": move.seq if move else 0, "since": move.at if move else None,
                    "actor": move.actor if move else None, "who": move.who if move else None,
                    "previous": targets.get(alias)})  # fmt: skip
    return out


def _row(v: ModelVersion, aliases: dict[str, int]) -> dict[str, Any]:
    return {"version": v.version, "kind": v.kind, "members": v.members, "format": v.format,
            "artifact": v.artifact, "created_at": v.created_at, "run_id": v.run_id,
            "passed": v.passed, "gated": v.gate is not None, "metric": key_metric(v),
            "aliases": sorted(a for a, n in aliases.items() if n == v.version)}  # fmt: skip


def _check_seen(s: Store, name: str, alias: str, seen: int | None) -> None:
    """409 when the alias moved since the page showed it (its last move is not ``seen``)."""
    if seen is None:
        return
    moves = s.alias_history(name, alias)
    if (moves[-1].seq if moves else 0) != seen:
        where = f"to {moves[-1].to_version} by {moves[-1].who}" if moves else "it has no moves"
        raise AliasConflict(f"alias {alias} of {name} moved meanwhile ({where}); "
                            "reload the page and try again")  # fmt: skip


def _answer(dash: DashboardState, read: Callable[[Store], T]) -> T | Response:
    try:
        return dash.ledger.read(read)
    except ModelNotFound as exc:
        return problem(404, str(exc))


def _move(dash: DashboardState, act: Callable[[Store], AliasMove]) -> Any:
    try:
        move = dash.ledger.read(act)
    except ModelNotFound as exc:
        return problem(404, str(exc))
    except AliasConflict as exc:
        return problem(409, str(exc))
    except ConveyorError as exc:  # refused by the registry's rules: nothing moved
        return problem(422, str(exc))
    return {"move": asdict(move)}
