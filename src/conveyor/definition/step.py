"""Steps and resources: plain functions with validated options and a code version."""

from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import math
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.core.durations import parse_duration
from conveyor.core.sizes import parse_size
from conveyor.definition.retry import MAX_WORKER_LOSSES
from conveyor.errors import DefinitionError

#: The parameter name that receives the input :class:`~conveyor.sources.item.Item`.
ITEM = "item"
#: Names a step or resource may not take: ``item`` is the input, ``id`` is the export's key column.
RESERVED = frozenset({ITEM, "id"})
EXECUTORS = ("process", "thread")


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How a step runs: validated when the decorator runs.

    ``cpus``, ``gpus`` and ``memory`` (bytes) are what one task of the step needs. On Ray they
    are its resource request (``num_cpus``, ``num_gpus``, ``memory``); the local executors
    accept and ignore them (``concurrency`` limits a step there).

    ``max_worker_losses`` is how many of a unit's attempts may end with its worker process lost
    (killed from outside, out of memory, a lost machine) before it is dead-lettered as
    ``WorkerLost``: a lost worker is seldom the unit's fault, so losses do not spend
    ``retries``, and a unit that kills every worker it runs on still ends."""

    retries: int = 0
    timeout: float | None = None
    version: str | None = None
    batch_size: int | None = None
    executor: str = "process"
    concurrency: int | None = None
    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = None
    backoff: float = 1.0
    backoff_max: float = 300.0
    retry_on: tuple[type[BaseException], ...] = ()
    give_up_on: tuple[type[BaseException], ...] = ()
    max_worker_losses: int = MAX_WORKER_LOSSES


_OPTION_NAMES = tuple(StepOptions.__dataclass_fields__)


def parse_options(step: str, options: Mapping[str, Any]) -> StepOptions:
    """Validate ``@pipe.step(...)`` keyword options, naming the step, the option and the fix."""
    for key in options:
        if key not in _OPTION_NAMES:
            raise DefinitionError(
                f"step {step!r}: unknown option {key!r}{did_you_mean(key, _OPTION_NAMES)}; "
                f"valid options are {', '.join(_OPTION_NAMES)}"
            )
    retries = options.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise DefinitionError(
            f"step {step!r}: retries={retries!r} must be a whole number >= 0 (e.g. retries=3)"
        )
    losses = options.get("max_worker_losses", MAX_WORKER_LOSSES)
    if isinstance(losses, bool) or not isinstance(losses, int) or losses < 1:
        raise DefinitionError(
            f"step {step!r}: max_worker_losses={losses!r} must be a whole number >= 1: how many "
            f"attempts may lose their worker before the unit is dead (e.g. max_worker_losses=3; "
            f"1 dead-letters it at the first loss)"
        )
    timeout = options.get("timeout")
    if timeout is not None:
        try:
            timeout = parse_duration(timeout)
        except ValueError as exc:
            raise DefinitionError(f"step {step!r}: timeout={exc}") from None
        if timeout <= 0:
            raise DefinitionError(f"step {step!r}: timeout must be positive (e.g. timeout='30s')")
    version = options.get("version")
    if version is not None and (
        not isinstance(version, str | int) or isinstance(version, bool) or not str(version).strip()
    ):
        raise DefinitionError(
            f"step {step!r}: version={version!r} must be a non-empty string such as '2'"
        )
    batch_size = _positive_int(step, "batch_size", options.get("batch_size"))
    executor = options.get("executor", "process")
    if executor not in EXECUTORS:
        hint = (
            "; Ray is chosen for a whole run: conveyor run --executor ray"
            if executor == "ray"
            else did_you_mean(str(executor), EXECUTORS)
        )
        raise DefinitionError(
            f"step {step!r}: executor={executor!r} is not one of {', '.join(EXECUTORS)}{hint}"
        )
    concurrency = _positive_int(step, "concurrency", options.get("concurrency"))
    memory = options.get("memory")
    if memory is not None:
        try:
            memory = parse_size(memory)
        except ValueError as exc:
            raise DefinitionError(f"step {step!r}: memory={exc}") from None
    backoff = _duration(step, "backoff", options.get("backoff", 1.0))
    backoff_max = _duration(step, "backoff_max", options.get("backoff_max", 300.0))
    if backoff_max < backoff:
        raise DefinitionError(
            f"step {step!r}: backoff_max={backoff_max:g}s is shorter than backoff={backoff:g}s; "
            f"the cap must be at least the first delay"
        )
    return StepOptions(
        retries=retries,
        timeout=timeout,
        version=None if version is None else str(version),
        batch_size=batch_size,
        executor=executor,
        concurrency=concurrency,
        cpus=_amount(step, "cpus", options.get("cpus")),
        gpus=_amount(step, "gpus", options.get("gpus")),
        memory=memory,
        backoff=backoff,
        backoff_max=backoff_max,
        retry_on=_exception_types(step, "retry_on", options.get("retry_on")),
        give_up_on=_exception_types(step, "give_up_on", options.get("give_up_on")),
        max_worker_losses=losses,
    )


def _duration(step: str, name: str, value: object) -> float:
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DefinitionError(f"step {step!r}: {name}={exc}") from None


def _amount(step: str, name: str, value: object) -> float | None:
    """A resource amount such as ``cpus=2`` or ``gpus=0.5``: a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DefinitionError(
            f"step {step!r}: {name}={value!r} must be a number >= 0 (e.g. {name}=1 or {name}=0.5)"
        )
    if value < 0:
        raise DefinitionError(f"step {step!r}: {name}={value!r} is negative; use 0 or more")
    return float(value)


def _exception_types(step: str, name: str, value: object) -> tuple[type[BaseException], ...]:
    if value is None:
        return ()
    types = tuple(value) if isinstance(value, list | tuple | set | frozenset) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise DefinitionError(
                f"step {step!r}: {name} must be exception classes, e.g. {name}=(TimeoutError,); "
                f"got {t!r}"
            )
    return types


def _positive_int(step: str, name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(f"step {step!r}: {name}={value!r} must be a whole number >= 1")
    return value


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or nothing."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of a step or resource function."""

    name: str
    has_default: bool


@dataclass(frozen=True, slots=True)
class Step:
    """A step: a plain function whose parameter names are its inputs."""

    name: str
    fn: Callable[..., Any]
    params: tuple[Parameter, ...]
    options: StepOptions
    code_version: str

    @property
    def version(self) -> str:
        """The version that enters cache keys: ``version=`` if given, else a hash of the code."""
        return self.options.version or self.code_version


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource: built once per worker process by calling ``fn``, then reused by steps."""

    name: str
    fn: Callable[..., Any]
    params: tuple[Parameter, ...]
    code_version: str = field(default="")


def function_parameters(kind: str, fn: Callable[..., Any]) -> tuple[Parameter, ...]:
    """The named parameters of ``fn``; ``*args``/``**kwargs``/positional-only are refused."""
    name = getattr(fn, "__name__", repr(fn))
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{kind} {name!r}: cannot read its parameters ({exc})") from None
    params = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(
                f"{kind} {name!r}: parameter {p.name!r} is *args/**kwargs; a {kind} names each "
                f"input it needs as its own parameter"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise DefinitionError(
                f"{kind} {name!r}: parameter {p.name!r} is positional-only; remove the '/' so "
                f"Conveyor can pass it by name"
            )
        params.append(Parameter(p.name, p.default is not p.empty))
    return tuple(params)


def code_version(fn: Callable[..., Any]) -> str:
    """A short hash of the function's code without decorators, docstring, comments or layout,
    so that only a real change of the code changes the version."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
        node = tree.body[0]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []
            body = node.body
            first = body[0] if body else None
            is_docstring = (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            )
            if is_docstring and len(body) > 1:
                node.body = body[1:]
        text = ast.unparse(node)
    except (OSError, TypeError, SyntaxError, IndexError):
        code = getattr(fn, "__code__", None)
        if code is None:
            name = getattr(fn, "__name__", repr(fn))
            raise DefinitionError(
                f"{name!r}: cannot read its source to version it; pass version='1' to the decorator"
            ) from None
        text = repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
