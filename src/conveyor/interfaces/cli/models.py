"""``conveyor models list|show|diff|promote|rollback|history``: the model registry, its versions
with their lineage and gate verdicts, and the aliases with every move they made.

:func:`gate_table` and :func:`gate_summary` draw a gate's verdict; ``conveyor train`` prints
them too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.interfaces.cli import model_export
from conveyor.interfaces.cli.app import handled, out, plural
from conveyor.interfaces.cli.dataset_tables import plain_table, value, when
from conveyor.interfaces.cli.options import JsonOpt, StoreOpt

if TYPE_CHECKING:
    from conveyor.ml.registry import Registry
    from conveyor.store.rows import AliasMove, ModelExport, ModelSummary, ModelVersion

models = typer.Typer(
    help="The model registry: versions with their lineage, aliases (champion, ...) and every "
    "move they made; promote and roll back.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The model (its fit function's name).")]
# No CONVEYOR_ALIAS, CONVEYOR_REASON or CONVEYOR_FORCE: a move says in the command what it moves.
AliasOpt = Annotated[
    str,
    typer.Option("--alias", help="The alias to move (lowercase letters, digits, '_' and '-')."),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded in the alias's history.")]


def _registry(store: str | None) -> Registry:
    from conveyor.ml.registry import Registry
    from conveyor.store import open_store

    return Registry(open_store(store, create=False))


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# list --------------------------------------------------------------------------------------------
@handled
def list_models(
    name: Annotated[
        str | None, typer.Argument(help="One model: its versions (default: every model).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="With a model: how many versions.")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="With a model: versions to skip.")] = 0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the registered models, or one model's versions, the newest first."""
    with _registry(store) as reg:
        if name is None:
            found = reg.models()
            if as_json:
                _dump([m.to_dict() for m in found])
            elif not found:
                out.print("no models yet; 'conveyor train FILE.py' registers one")
            else:
                out.print(models_table(found))
            return
        versions = reg.versions(name, limit=limit, offset=offset)
        aliases = reg.aliases(name)
    if as_json:
        _dump([{**v.to_dict(), "aliases": _held(aliases, v.version)} for v in versions])
        return
    out.print(versions_table(versions, aliases))


def models_table(found: Sequence[ModelSummary]) -> Table:
    """One row per model: kind, versions, the latest, its aliases, when it last changed."""
    table = plain_table("model", "kind", "versions", "latest", "aliases", "updated",
                   right=("versions", "latest"))  # fmt: skip
    for m in found:
        table.add_row(
            escape(m.name), m.kind, f"{m.versions:,}", str(m.latest),
            escape(", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items())) or "-"),
            when(m.updated_at),
        )  # fmt: skip
    return table


def versions_table(versions: Sequence[ModelVersion], aliases: Mapping[str, int]) -> Table:
    """One row per version: when, its run, its main metric on valid and golden, the gate."""
    table = plain_table("version", "registered", "run", "valid", "golden", "gate", "aliases",
                   "artifact", right=("version",))  # fmt: skip
    for v in versions:
        table.add_row(
            str(v.version), when(v.created_at), escape((v.run_id or "-")[:12]),
            _main_metric(v, "valid"), _main_metric(v, "golden"), _verdict(v.passed),
            escape(", ".join(_held(aliases, v.version)) or "-"), v.artifact[:12],
        )  # fmt: skip
    return table


def _main_metric(v: ModelVersion, split: str) -> str:
    scores = v.metrics.get(split) or {}
    metric = v.lineage.get("metric")
    if metric not in scores:
        metric = next(iter(scores), None)
    return "-" if metric is None else f"{escape(str(metric))} {value(scores[metric])}"


def _verdict(passed: bool | None) -> str:
    return {None: "-", True: "passed", False: "[red]FAILED[/]"}[passed]


def _held(aliases: Mapping[str, int], version: int) -> list[str]:
    return sorted(a for a, v in aliases.items() if v == version)


# show --------------------------------------------------------------------------------------------
@handled
def show(
    name: NameArg,
    version: Annotated[
        str | None, typer.Argument(help="A version number or an alias (default: the latest).")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version: its lineage (data, split, golden set, parameters, code, run, packages),
    metrics, gate verdict, the aliases that point at it and its exports."""
    with _registry(store) as reg:
        record = reg.resolve(name if version is None else f"{name}@{version}")
        held = _held(reg.aliases(name), record.version)
        exports = reg.exports(name, record.version)
    if as_json:
        _dump({**record.to_dict(), "aliases": held, "exports": [e.to_dict() for e in exports]})
        return
    for line in _lineage_lines(record, held):
        out.print(line)
    out.print(metrics_table(record.metrics))
    if record.gate is not None:
        out.print(gate_summary(record.gate))
        out.print(gate_table(record.gate))
    if exports:
        out.print("exports:")
        out.print(exports_table(exports))


def _lineage_lines(r: ModelVersion, held: Sequence[str]) -> list[str]:
    lin = r.lineage
    kind = f"model set of {plural(r.members, 'group')}" if r.kind == "model_set" else r.kind
    place = escape(str(lin.get("artifacts", "-")))
    lines = [
        f"model [bold]{escape(r.name)}[/] version {r.version} ({kind}), registered "
        f"{when(r.created_at)}; aliases: {escape(', '.join(held)) or 'none'}",
        f"  artifact: {r.artifact} ({escape(r.format)}) in {place}",
    ]
    data = escape(str(lin.get("dataset") or "a table"))
    version = str(lin.get("data_version") or "-")[:12]
    split = lin.get("split") or {}
    shares = ", ".join(f"{escape(str(k))} {escape(str(v))}" for k, v in split.items()) or "-"
    lines.append(f"  data: {data} version {version}; split {shares}")
    golden = lin.get("golden")
    if isinstance(golden, Mapping):
        rows = golden.get("rows")
        count = f"{rows:,} rows" if isinstance(rows, int) else "- rows"
        lines.append(f"  golden: version {str(golden.get('version') or '-')[:12]}, {count}")
    trial, trials = lin.get("trial"), lin.get("trials")
    run = r.run_id or lin.get("run_id") or "-"
    trained = f"  trained: run {escape(str(run))}"
    if trial is not None:
        trained += f", trial {trial}" + (f" of {trials}" if trials is not None else "")
    elif trials is not None:
        trained += f", {plural(int(trials), 'trial')}"
    if lin.get("seed") is not None:
        trained += f", seed {lin['seed']}"
    lines.append(trained)
    for label, key in (("params", "params"), ("code", "code_versions"), ("packages", "packages")):
        found = lin.get(key) or {}
        if isinstance(found, Mapping):
            text = ", ".join(f"{escape(str(k))}={value(v)}" for k, v in found.items()) or "-"
            lines.append(f"  {label}: {text}")
    return lines


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> Table:
    """One row per metric, one column per split it was scored on (valid, golden)."""
    splits = list(metrics)
    table = plain_table("metric", *splits, right=splits)
    names: list[str] = []
    for scores in metrics.values():
        names.extend(n for n in scores if n not in names)
    for n in names:
        table.add_row(escape(n), *(value((metrics[s] or {}).get(n), 6) for s in splits))
    return table


def exports_table(exports: Sequence[ModelExport]) -> Table:
    """One row per export: format, where its bytes are, what was measured, when."""
    table = plain_table("format", "artifact", "details", "exported")
    for e in exports:
        details = ", ".join(f"{escape(str(k))}={value(v, 3)}" for k, v in e.details.items())
        table.add_row(e.format, (e.artifact or "-")[:12], details or "-", when(e.at))
    table.columns[2].max_width, table.columns[2].overflow = 60, "ellipsis"
    return table


# the gate ----------------------------------------------------------------------------------------
def gate_summary(verdict: Mapping[str, Any]) -> str:
    """One line: the gate passed or failed, against which champion, on which golden set."""
    state = "passed" if verdict.get("passed") else "[red]FAILED[/]"
    champion = verdict.get("champion")
    against = f"champion {champion}" if champion is not None else "no champion (rules alone)"
    golden = verdict.get("golden") or {}
    rows = golden.get("rows")
    where = f"golden {str(golden.get('version') or '-')[:12]}"
    if isinstance(rows, int):
        where += f" ({rows:,} rows{', rescored' if verdict.get('rescored') else ''})"
    confidence = verdict.get("confidence")
    noise = (
        f"; {confidence:.0%} intervals, {verdict.get('resamples', 0):,} resamples, "
        f"seed {verdict.get('seed')}"
        if isinstance(confidence, int | float)
        else ""
    )
    return f"gate: {state} vs {against} on {where}{noise}"


def gate_table(verdict: Mapping[str, Any]) -> Table:
    """One row per rule of a gate's verdict (``Verdict.as_dict()``): the challenger's and the
    champion's score, the change and its interval, and each check with its threshold."""
    confidence = verdict.get("confidence")
    interval = f"{confidence:.0%} interval" if isinstance(confidence, int | float) else "interval"
    table = plain_table("metric", "challenger", "champion", "delta", "relative", interval, "floor",
                   "min abs", "min rel", "noise", "rule",
                   right=("challenger", "champion", "delta", "relative"))  # fmt: skip
    for rule in verdict.get("rules") or []:
        checks = rule.get("checks") or {}
        arrow = {"maximize": " ↑", "minimize": " ↓"}.get(str(rule.get("direction")), "")
        span = rule.get("interval")
        relative = rule.get("relative")
        table.add_row(
            escape(str(rule.get("metric"))) + arrow,
            value(rule.get("challenger")),
            value(rule.get("champion")),
            _signed(rule.get("delta")),
            "-" if relative is None else f"{relative:+.2%}",
            "-" if not span else f"[{value(span[0], 3)}, {value(span[1], 3)}]",
            _check(checks.get("floor"), rule.get("floor")),
            _check(checks.get("min_absolute"), rule.get("min_absolute")),
            _check(checks.get("min_relative"), rule.get("min_relative"), percent=True),
            _check(checks.get("noise"), None),
            "pass" if rule.get("passed") else "[red]FAIL[/]",
        )
    return table


def _signed(v: Any) -> str:
    return "-" if v is None else f"{v:+.4g}"


def _check(passed: bool | None, threshold: Any, *, percent: bool = False) -> str:
    """A check's cell: its threshold (if any) and ok or FAIL; '-' when it was not checked."""
    if passed is None:
        return "-"
    shown = ""
    if isinstance(threshold, int | float):
        shown = f"{threshold:.2%} " if percent else f"{value(float(threshold), 3)} "
    return f"{shown}ok" if passed else f"{shown}[red]FAIL[/]"


# diff --------------------------------------------------------------------------------------------
@handled
def diff(
    name: NameArg,
    before: Annotated[str, typer.Argument(help="A version number or an alias.")],
    after: Annotated[str, typer.Argument(help="Another version number or alias.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions: only the parameters, metrics, data and code that differ."""
    with _registry(store) as reg:
        a, b = reg.resolve(f"{name}@{before}"), reg.resolve(f"{name}@{after}")
        changes = reg.diff(name, a.version, b.version)
    if as_json:
        _dump({"name": name, "versions": [a.version, b.version], **changes})
        return
    count = sum(len(part) for part in changes.values())
    out.print(f"model [bold]{escape(name)}[/] {a.version} → {b.version}: "
              f"{plural(count, 'difference')}")  # fmt: skip
    if count:
        table = plain_table("what", "key", str(a.version), str(b.version))
        for part, found in changes.items():
            for key, (old, new) in found.items():
                table.add_row(part, escape(key), _cell(old), _cell(new))
        out.print(table)


def _cell(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64:
        return v[:12]  # a digest
    return value(v, 6)


# promote, rollback, history ----------------------------------------------------------------------
@handled
def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version (a number, or another alias).")],
    alias: AliasOpt = "champion",
    reason: ReasonOpt = "",
    force: Annotated[
        bool, typer.Option("--force", help="Promote it although its gate failed (recorded).")
    ] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at a version; the move is recorded with who and why."""
    with _registry(store) as reg:
        move = reg.promote(name, version, alias=alias, reason=reason, force=force)
    _print_move(move, as_json)


@handled
def rollback(
    name: NameArg,
    alias: AliasOpt = "champion",
    reason: ReasonOpt = "",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to its previous holder; the move is recorded."""
    with _registry(store) as reg:
        move = reg.rollback(name, alias=alias, reason=reason)
    _print_move(move, as_json)


def _print_move(move: AliasMove, as_json: bool) -> None:
    if as_json:
        _dump(move.to_dict())
        return
    before = "nothing" if move.from_version is None else str(move.from_version)
    done = "promoted" if move.action == "promote" else "rolled back"
    forced = ", forced past its failed gate" if move.forced else ""
    why = f": {escape(move.reason)}" if move.reason else ""
    out.print(
        f"alias [bold]{escape(move.alias)}[/] of {escape(move.name)}: {before} → "
        f"{move.to_version} ({done} by {escape(move.who)}{forced}){why}"
    )


@handled
def history(
    name: NameArg,
    alias: Annotated[
        str | None, typer.Option("--alias", help="One alias (default: all of them).")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every move of the model's aliases, the oldest first: from, to, how, when, who, why."""
    with _registry(store) as reg:
        found = reg.history(name, alias)
    if as_json:
        _dump([m.to_dict() for m in found])
        return
    if not found:
        out.print(f"no alias of {escape(name)} has moved yet; 'conveyor models promote' moves one")
        return
    out.print(history_table(found))


def history_table(found: Sequence[AliasMove]) -> Table:
    """One row per move: alias, its number in the alias's history, from, to, action (and
    whether it was forced), when, by (actor and who) and why."""
    table = plain_table("alias", "#", "from", "to", "action", "when", "by", "why",
                   right=("#", "from", "to"))  # fmt: skip
    for m in found:
        action = f"{m.action} [red](forced)[/]" if m.forced else m.action
        table.add_row(
            escape(m.alias), str(m.seq), "-" if m.from_version is None else str(m.from_version),
            str(m.to_version), action, when(m.at), f"{m.actor} {escape(m.who)}",
            escape(m.reason) or "-",
        )  # fmt: skip
    by, why = table.columns[6], table.columns[7]
    by.no_wrap, by.overflow, by.max_width = False, "fold", 20
    why.no_wrap, why.overflow, why.min_width = False, "fold", 24
    return table


models.command("list")(list_models)
models.command("show")(show)
models.command("diff")(diff)
models.command("promote")(promote)
models.command("rollback")(rollback)
models.command("history")(history)
models.command("export")(model_export.export)
