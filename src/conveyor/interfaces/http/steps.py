"""``POST /steps/{step}``: each step as its own JSON API, with a request schema derived from
the step's type hints, for calling one datapoint or model on its own (and testing it locally).

The body names the step's inputs: ``item`` (the item's fields, for steps that read the item)
and the upstream steps it takes. Resources come from the server, built once at start-up."""

from __future__ import annotations

import asyncio
import typing
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel, create_model

from conveyor.definition.step import ITEM
from conveyor.executors.runtime import Runtime, error_info
from conveyor.interfaces.http.schemas import SafeJSONResponse, StepOutput, error_responses, problem
from conveyor.sources.item import Item, ItemKind

if TYPE_CHECKING:
    from conveyor.definition.graph import StepNode
    from conveyor.definition.pipeline import Pipeline


def step_router(pipeline: Pipeline, runtime: Runtime) -> APIRouter:
    """One route per step of ``pipeline``, each with its own request model in the OpenAPI
    document, calling the steps with ``runtime``'s resources. A step that raises answers 422
    with the step and the exception; one that overruns its ``timeout`` answers 504."""
    router = APIRouter(default_response_class=SafeJSONResponse)
    for name in pipeline.graph.order:
        node = pipeline.graph.nodes[name]
        model = _request_model(node)
        router.post(
            f"/steps/{name}",
            summary=f"Run step {name!r} on the given inputs",
            description=(node.step.fn.__doc__ or "").strip() or None,
            name=f"step_{name}",
            response_model=StepOutput,
            responses=error_responses(401, 413, 422, 503, 504),
        )(_handler(node, model, runtime))
    return router


def _request_model(node: StepNode) -> type[BaseModel]:
    hints = _hints(node)
    batched = bool(node.step.options.batch_size)
    fields: dict[str, Any] = {}
    if node.uses_item:
        fields[ITEM] = (dict[str, Any], ...)
    for name in node.upstream:
        hint = hints.get(name, Any)
        if batched and typing.get_origin(hint) is list and typing.get_args(hint):
            hint = typing.get_args(hint)[0]  # one value here; the batch is of one
        fields[name] = (hint, ...)
    return create_model(f"{node.step.name}_input", **fields)


def _hints(node: StepNode) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(node.step.fn)
    except Exception:  # unresolvable annotations: accept any JSON rather than fail to serve
        return {}
    return {k: (Any if v is Item else v) for k, v in hints.items()}


def _handler(node: StepNode, model: type[BaseModel], runtime: Runtime) -> Any:
    step = node.step
    batched = bool(step.options.batch_size)
    timeout = step.options.timeout

    async def invoke(body: model) -> Any:  # type: ignore[valid-type]
        values = body.model_dump()  # type: ignore[attr-defined]
        kwargs: dict[str, Any] = {}
        if node.uses_item:
            fields = values[ITEM]
            kwargs[ITEM] = Item(str(fields.get("id", "request")), ItemKind.RECORD, fields=fields)
        for name in node.upstream:
            kwargs[name] = values[name]
        if batched:
            kwargs = {k: [v] for k, v in kwargs.items()}
        try:
            for name in node.resources:  # built at start-up: no thread hop once it is
                kwargs[name] = (runtime.resource(name) if runtime.built(name)
                                else await asyncio.to_thread(runtime.resource, name))  # fmt: skip
            value = await asyncio.wait_for(asyncio.to_thread(step.fn, **kwargs), timeout)
            if batched:
                value = value[0]
        except TimeoutError:
            return problem(504, f"step {step.name!r} ran longer than its timeout of {timeout:g}s")
        except Exception as exc:
            info = error_info(exc, step.options)
            detail = f"step {step.name!r} failed: {info.type}: {info.message}"
            return problem(422, detail, step=step.name, error_type=info.type)
        return {"step": step.name, "output": value}

    invoke.__name__ = f"step_{step.name}"
    # The model is built at run time: give FastAPI the class itself, not the postponed string.
    invoke.__annotations__ = {"body": model, "return": Any}
    return invoke
