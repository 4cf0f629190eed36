"""The :class:`Pipeline`: a named set of steps and resources, defined with decorators."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from conveyor.definition.alarms import AlarmRule, check_steps
from conveyor.definition.alarms import rules as alarm_rules
from conveyor.definition.datasets import DatasetSpec, dataset_checks, dataset_parameters
from conveyor.definition.graph import Graph, build_graph
from conveyor.definition.models import MetricSpec, ModelsMixin, ModelSpec, check_models
from conveyor.definition.step import (
    RESERVED,
    Resource,
    Step,
    code_version,
    function_parameters,
    parse_options,
)
from conveyor.errors import DefinitionError

if TYPE_CHECKING:
    from conveyor.core.units import RunReport
    from conveyor.interfaces.api import Stream

F = TypeVar("F", bound=Callable[..., Any])


class Pipeline(ModelsMixin):
    """A pipeline of plain functions. ``@pipe.step``, ``@pipe.resource``, ``@pipe.model`` and
    ``@pipe.metric`` register functions and return them unchanged, so each stays callable and
    testable on its own."""

    def __init__(
        self,
        name: str,
        *,
        notify: str | Iterable[str] = (),
        alarms: Iterable[AlarmRule | Mapping[str, Any]] = (),
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError("Pipeline(name): the name must be a non-empty string")
        self.name = name
        urls = (notify,) if isinstance(notify, str) else tuple(notify)
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise DefinitionError(
                    f"Pipeline({name!r}, notify={url!r}): a webhook must be an http:// or "
                    f"https:// URL"
                )
        #: Webhooks told when runs of this pipeline finish, fail often or dead-letter units.
        self.notify = urls
        #: Alarm rules evaluated while the pipeline runs (see :mod:`conveyor.definition.alarms`).
        self.alarms = alarm_rules(alarms, f"Pipeline({name!r}, alarms=...)")
        self.steps: dict[str, Step] = {}
        self.resources: dict[str, Resource] = {}
        self.models: dict[str, ModelSpec] = {}
        self.metrics: dict[str, MetricSpec] = {}
        #: The pipeline's datasets (``@pipe.dataset``), by name.
        self.datasets: dict[str, DatasetSpec] = {}
        self._graph: Graph | None = None

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.steps)})"

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def step(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Register a step. Options: ``retries``, ``timeout`` (``"30s"``), ``version``,
        ``batch_size`` (the function takes and returns lists), ``executor`` (``"process"`` or
        ``"thread"``), ``concurrency``, and ``cpus``, ``gpus``, ``memory`` (``"2GB"``): the
        resources Ray reserves for it."""
        if fn is not None:
            return self._add_step(fn, {})
        if options.get("name") is not None:
            raise DefinitionError("@pipe.step: the step's name is its function's name")

        def decorate(fn: F) -> F:
            return self._add_step(fn, options)

        return decorate

    @overload
    def resource(self, fn: F, /) -> F: ...

    @overload
    def resource(self, fn: None = None, /) -> Callable[[F], F]: ...

    def resource(self, fn: F | None = None, /) -> F | Callable[[F], F]:
        """Register a resource: built once per worker process (a model, a client) and passed to
        every step that names it as a parameter."""
        if fn is None:
            return self._add_resource
        return self._add_resource(fn)

    @overload
    def dataset(self, fn: F, /) -> F: ...

    @overload
    def dataset(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def dataset(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Register a dataset: a function of no parameters returning a pandas DataFrame or a
        pyarrow Table, versioned by its content; every version must pass ``checks``
        (``cv.checks.no_nulls()``, ..., or a Pandera schema)."""
        if fn is not None:
            return self._add_dataset(fn, ())
        unknown = sorted(set(options) - {"checks"})
        if unknown:
            raise DefinitionError(
                f"@pipe.dataset: unknown option {unknown[0]!r}; the one option is checks=[...]"
            )

        def decorate(fn: F) -> F:
            return self._add_dataset(fn, options.get("checks", ()))

        return decorate

    def _add_dataset(self, fn: F, checks: Iterable[object]) -> F:
        name = self._check_function("dataset", fn)
        dataset_parameters(name, fn)
        self.datasets[name] = DatasetSpec(
            name=name, fn=fn, checks=dataset_checks(name, checks), code_version=code_version(fn)
        )
        return fn

    def _add_step(self, fn: F, options: dict[str, Any]) -> F:
        name = self._check_function("step", fn)
        parsed = parse_options(name, options)
        self.steps[name] = Step(
            name=name,
            fn=fn,
            params=function_parameters("step", fn),
            options=parsed,
            code_version=code_version(fn) if parsed.version is None else "",
        )
        self._graph = None
        return fn

    def _add_resource(self, fn: F) -> F:
        name = self._check_function("resource", fn)
        self.resources[name] = Resource(
            name=name,
            fn=fn,
            params=function_parameters("resource", fn),
            code_version=code_version(fn),
        )
        self._graph = None
        return fn

    def _check_function(self, kind: str, fn: object) -> str:
        if isinstance(fn, staticmethod | classmethod):
            fn = fn.__func__
        if not inspect.isfunction(fn):
            raise DefinitionError(
                f"@pipe.{kind} was applied to {getattr(fn, '__qualname__', type(fn).__name__)!r}, "
                f"which is not a function; decorate a "
                f"'def' function (a class or a value cannot be a {kind})"
            )
        name = fn.__name__
        if name == "<lambda>":
            raise DefinitionError(f"@pipe.{kind}: a lambda has no name; use a 'def' function")
        if (
            inspect.iscoroutinefunction(fn)
            or inspect.isgeneratorfunction(fn)
            or inspect.isasyncgenfunction(fn)
        ):
            raise DefinitionError(
                f"{kind} {name!r} is an async or generator function; a {kind} must be a plain "
                f"function that returns its value"
            )
        if name in RESERVED:
            raise DefinitionError(
                f"{kind} {name!r}: the name {name!r} is reserved ({', '.join(sorted(RESERVED))}); "
                f"rename the function"
            )
        taken = {
            **dict.fromkeys(self.steps, "step"),
            **dict.fromkeys(self.resources, "resource"),
            **dict.fromkeys(self.models, "model"),
            **dict.fromkeys(self.datasets, "dataset"),
        }
        if name in taken:
            other = taken[name]
            raise DefinitionError(
                f"{kind} {name!r} is defined twice (already a {other} in pipeline "
                f"{self.name!r}); rename one of the functions"
            )
        return name

    @property
    def graph(self) -> Graph:
        """The validated DAG; raises :class:`DefinitionError` if the definition is invalid."""
        if self._graph is None:
            graph = build_graph(self.steps, self.resources)
            check_steps(self.alarms, graph.nodes)
            check_models(self.models, self.metrics, self.datasets)
            self._graph = graph
        return self._graph

    def validate(self) -> Pipeline:
        """Check the whole definition now (unknown names, cycles) and return the pipeline. A
        pipeline of models or datasets alone (no steps) has no graph: its models and metrics
        are checked."""
        if self.steps or not (self.models or self.datasets):
            _ = self.graph
        else:
            check_models(self.models, self.metrics, self.datasets)
        return self

    def stream(
        self,
        *,
        store: str | Path | None = None,
        workers: int | None = None,
        id_field: str | None = None,
        alarms: Iterable[AlarmRule] = (),
        notify: Iterable[str] = (),
    ) -> Stream:
        """An open run accepting items one by one: ``with pipe.stream() as s:
        item_id = s.submit({...}); s.result(item_id, timeout=30)``. ``alarms`` are evaluated
        (with the pipeline's own) while it is open, notifying ``notify`` webhooks too."""
        from conveyor.interfaces.api import open_stream

        return open_stream(self, store=store, workers=workers, id_field=id_field,
                           alarms=list(alarms), notify=list(notify))  # fmt: skip

    def run(
        self,
        source: str | Path | Iterable[Any],
        *,
        store: str | Path | None = None,
        workers: int | None = None,
        only: Iterable[str] | None = None,
        force: Iterable[str] | None = None,
        executor: str = "local",
        ray_address: str | None = None,
        **source_options: Any,
    ) -> RunReport:
        """Run the pipeline over a batch of inputs (a path, a glob, or an iterable of records or
        :class:`~conveyor.Item`) and return the run's report. ``executor="ray"`` runs it
        on Ray: the cluster at ``ray_address``, the Ray this process is connected to, or a
        local one started for the run."""
        from conveyor.interfaces.api import run_pipeline

        return run_pipeline(
            self,
            source,
            store=store,
            workers=workers,
            only=list(only or []),
            force=list(force or []),
            executor=executor,
            ray_address=ray_address,
            **source_options,
        )
