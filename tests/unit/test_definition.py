"""The definition layer: decorators, parameter resolution, validation messages, code versions."""

from __future__ import annotations

import re
import runpy
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv
from conveyor import DefinitionError
from conveyor.definition.step import StepOptions

RESOURCES = Path(__file__).parents[1] / "resources"


def load(name: str) -> cv.Pipeline:
    """Execute ``tests/resources/NAME.py`` and return its one pipeline, validated."""
    namespace = runpy.run_path(str(RESOURCES / f"{name}.py"))
    [pipe] = [value for value in namespace.values() if isinstance(value, cv.Pipeline)]
    return pipe.validate()


def cycle_in(message: str) -> list[str]:
    """The step names of ``... cycle: a -> b -> a; ...``."""
    match = re.search(r"cycle: ([\w >-]+?);|cycle: ([\w >-]+)$", message)
    assert match, message
    return (match.group(1) or match.group(2)).split(" -> ")


@pytest.fixture
def text_file(tmp_path: Path) -> cv.Item:
    path = tmp_path / "mit.txt"
    path.write_text("MIT License\nPermission is hereby granted\n", encoding="utf-8")
    return cv.Item("mit.txt", cv.ItemKind.FILE, path=path)


# -- decorators return the function unchanged --------------------------------------------------


def test_step_decorator_returns_the_function_itself(text_file: cv.Item) -> None:
    pipe = cv.Pipeline("p")

    def text(item: cv.Item) -> str:
        return item.read_text()

    def words(text: str) -> list[str]:
        return text.split()

    assert pipe.step(text) is text
    assert pipe.step(retries=2, timeout="5s")(words) is words
    assert pipe.steps["text"].fn is text
    assert pipe.steps["words"].fn is words
    assert words(text(text_file))[:2] == ["MIT", "License"]


def test_resource_decorator_returns_the_function_itself_with_or_without_parentheses() -> None:
    pipe = cv.Pipeline("p")

    def model() -> dict[str, int]:
        return {"mit": 1}

    def tokenizer() -> str:
        return "split"

    assert pipe.resource(model) is model
    assert pipe.resource()(tokenizer) is tokenizer
    assert set(pipe.resources) == {"model", "tokenizer"}
    assert model() == {"mit": 1}


def test_steps_of_a_pipeline_module_stay_plain_callables(text_file: cv.Item) -> None:
    namespace = runpy.run_path(str(RESOURCES / "good_pipeline.py"))
    words = namespace["text"](text_file)
    assert namespace["words"](words) == ["mit", "license", "permission", "is", "hereby", "granted"]
    vocabulary = namespace["vocabulary"]()
    assert namespace["known"]([["mit", "x"], ["gpl", "apache"], []], vocabulary) == [1, 2, 0]
    assert namespace["summary"](text_file, 3) == "mit.txt: 3"


# -- parameter resolution -------------------------------------------------------------------------


def test_parameters_resolve_to_item_steps_and_resources_and_defaults_are_left_alone() -> None:
    graph = load("good_pipeline").graph

    assert graph.order == ("text", "words", "known", "summary")
    text, words, known, summary = (graph.nodes[n] for n in graph.order)
    assert (text.uses_item, text.upstream, text.resources) == (True, (), ())
    assert (words.uses_item, words.upstream, words.resources) == (False, ("text",), ())
    assert (known.uses_item, known.upstream) == (False, ("words",))
    assert known.resources == ("vocabulary",)
    # 'separator' has a default and names nothing: it is simply not an input
    assert (summary.uses_item, summary.upstream, summary.resources) == (True, ("known",), ())
    assert text.downstream == ("words",)
    assert text.descendants == ("words", "known", "summary")
    assert summary.descendants == ()


def test_options_are_parsed_into_step_options() -> None:
    steps = load("good_pipeline").steps
    assert steps["text"].options == StepOptions()
    assert steps["words"].options.retries == 2
    assert steps["words"].options.timeout == 30.0
    assert steps["known"].options.batch_size == 8
    assert steps["summary"].options.executor == "thread"
    assert steps["summary"].options.concurrency == 2


def test_a_parameter_named_after_a_step_is_that_step_even_with_a_default() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def text(item: cv.Item) -> str:
        return item.read_text()

    @pipe.step
    def words(text: str = "", limit: int = 10) -> list[str]:
        return text.split()[:limit]

    assert pipe.graph.nodes["words"].upstream == ("text",)


def test_order_puts_every_step_after_what_it_needs_whatever_the_definition_order() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def report(counts: int, words: list[str]) -> str:
        return f"{counts} {words}"

    @pipe.step
    def counts(words: list[str]) -> int:
        return len(words)

    @pipe.step
    def words(item: cv.Item) -> list[str]:
        return item.read_text().split()

    order = pipe.graph.order
    assert sorted(order) == ["counts", "report", "words"]
    assert order.index("words") < order.index("counts") < order.index("report")


def test_resources_may_take_other_resources_and_defaults() -> None:
    pipe = cv.Pipeline("p")

    @pipe.resource
    def tokenizer() -> str:
        return "whitespace"

    @pipe.resource
    def model(tokenizer: str, threshold: float = 0.5) -> tuple[str, float]:
        return tokenizer, threshold

    @pipe.step
    def score(item: cv.Item, model: tuple[str, float]) -> float:
        return model[1]

    assert pipe.graph.nodes["score"].resources == ("model",)
    assert [p.name for p in pipe.resources["model"].params] == ["tokenizer", "threshold"]


def test_keyword_only_parameters_are_accepted() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def text(*, item: cv.Item) -> str:
        return item.read_text()

    assert pipe.graph.nodes["text"].uses_item


def test_adding_a_step_after_reading_the_graph_rebuilds_it() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def text(item: cv.Item) -> str:
        return item.read_text()

    assert pipe.graph.order == ("text",)

    @pipe.step
    def size(text: str) -> int:
        return len(text)

    assert pipe.graph.order == ("text", "size")


# -- bad definitions: one clear DefinitionError each ------------------------------------------


@pytest.mark.parametrize(
    ("module", "fragments"),
    [
        ("cyclic_steps", ["the steps form a cycle: a -> b -> a", "cannot depend on its own"]),
        (
            "unknown_param",
            [
                "unknown_param.py:15: step 'words'",
                "parameter 'txet'",
                "did you mean 'text'?",
                "rename it, define a step or resource with that name, or give it a default",
            ],
        ),
        (
            "duplicate_step",
            ["step 'text' is defined twice", "pipeline 'duplicate'", "rename one of the functions"],
        ),
        (
            "not_a_function",
            ["@pipe.step was applied to 'Text', which is not a function", "decorate a 'def'"],
        ),
        ("lambda_step", ["@pipe.step: a lambda has no name", "use a 'def' function"]),
        (
            "bad_option",
            [
                "step 'text'",
                "unknown option 'retires'",
                "did you mean 'retries'?",
                "valid options are retries, timeout",
            ],
        ),
        ("negative_retries", ["step 'text'", "retries=-1", "whole number >= 0", "retries=3"]),
        ("bad_duration", ["step 'text'", "timeout='soon' is not a duration", "'30s'"]),
    ],
)
def test_each_bad_module_raises_a_definition_error_that_says_what_to_fix(
    module: str, fragments: list[str]
) -> None:
    with pytest.raises(DefinitionError) as excinfo:
        load(module)
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message


def test_an_unknown_parameter_far_from_every_name_gets_no_suggestion() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def text(item: cv.Item) -> str:
        return item.read_text()

    @pipe.step
    def score(zzzzzz: str) -> int:
        return len(zzzzzz)

    with pytest.raises(DefinitionError) as excinfo:
        pipe.validate()
    # the message points at the step's code: this file and the line of its decorator
    line = score.__code__.co_firstlineno
    assert Path(__file__).read_text(encoding="utf-8").splitlines()[line - 1].strip() == "@pipe.step"
    assert str(excinfo.value).startswith(
        f"{Path(__file__).name}:{line}: step 'score': parameter 'zzzzzz' is not a step"
    )
    assert "did you mean" not in str(excinfo.value)


def test_an_unknown_parameter_can_be_a_typo_of_a_resource() -> None:
    pipe = cv.Pipeline("p")

    @pipe.resource
    def tokenizer() -> str:
        return "ws"

    @pipe.step
    def words(item: cv.Item, tokeniser: str) -> list[str]:
        return item.read_text().split()

    with pytest.raises(DefinitionError, match=r"did you mean 'tokenizer'\?"):
        pipe.validate()


def test_a_pipeline_without_steps_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"no steps; decorate a function with @pipe\.step"):
        cv.Pipeline("empty").validate()


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_a_pipeline_needs_a_non_empty_name(name: Any) -> None:
    with pytest.raises(DefinitionError, match="non-empty string"):
        cv.Pipeline(name)


def test_a_step_and_a_resource_cannot_share_a_name() -> None:
    pipe = cv.Pipeline("p")

    @pipe.resource
    def model() -> int:
        return 1

    def model_step(item: cv.Item) -> int:
        return 1

    model_step.__name__ = "model"
    with pytest.raises(DefinitionError, match=r"'model' is defined twice \(already a resource"):
        pipe.step(model_step)


def test_a_lambda_or_a_callable_object_or_a_value_is_not_a_step() -> None:
    pipe = cv.Pipeline("p")

    class Scorer:
        def __call__(self, item: cv.Item) -> int:
            return 1

    with pytest.raises(DefinitionError, match="a lambda has no name"):
        pipe.step(lambda item: item)
    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(Scorer())
    assert str(excinfo.value) == (
        "@pipe.step was applied to 'Scorer', which is not a function; decorate a 'def' function "
        "(a class or a value cannot be a step)"
    )
    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(Scorer)
    assert str(excinfo.value).startswith(
        "@pipe.step was applied to "
        "'test_a_lambda_or_a_callable_object_or_a_value_is_not_a_step.<locals>.Scorer', "
        "which is not a function"
    )
    with pytest.raises(DefinitionError) as excinfo:
        pipe.resource(3)  # type: ignore[call-overload]
    assert str(excinfo.value) == (
        "@pipe.resource was applied to 'int', which is not a function; decorate a 'def' "
        "function (a class or a value cannot be a resource)"
    )
    assert pipe.steps == {}
    assert pipe.resources == {}


@pytest.mark.parametrize("name", ["item", "id"])
def test_reserved_names_cannot_be_steps_or_resources(name: str) -> None:
    pipe = cv.Pipeline("p")

    def fn() -> int:
        return 1

    fn.__name__ = name
    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(fn)
    assert str(excinfo.value) == (
        f"step {name!r}: the name {name!r} is reserved (id, item); rename the function"
    )
    with pytest.raises(DefinitionError, match=f"resource {name!r}: the name {name!r} is reserved"):
        pipe.resource(fn)


def test_async_and_generator_functions_are_refused() -> None:
    pipe = cv.Pipeline("p")

    async def fetch(item: cv.Item) -> str:
        return item.id

    def lines(item: cv.Item) -> Iterator[str]:
        yield from item.read_text().splitlines()

    def model() -> Iterator[int]:
        yield 1

    with pytest.raises(DefinitionError, match="step 'fetch' is an async or generator function"):
        pipe.step(fetch)
    with pytest.raises(DefinitionError, match="must be a plain function that returns its value"):
        pipe.step(lines)
    with pytest.raises(DefinitionError, match="resource 'model' is an async or generator"):
        pipe.resource(model)


def test_async_generator_functions_are_refused() -> None:
    pipe = cv.Pipeline("p")

    async def stream(item: cv.Item) -> AsyncIterator[str]:
        yield item.id

    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(stream)
    assert str(excinfo.value) == (
        "step 'stream' is an async or generator function; a step must be a plain function that "
        "returns its value"
    )
    assert pipe.steps == {}


def test_star_args_star_kwargs_and_positional_only_parameters_are_refused() -> None:
    pipe = cv.Pipeline("p")

    def many(*texts: str) -> int:
        return len(texts)

    def loose(item: cv.Item, **extra: Any) -> int:
        return len(extra)

    def positional(item: cv.Item, /) -> str:
        return item.id

    with pytest.raises(DefinitionError, match=r"step 'many': parameter 'texts' is \*args/\*\*kw"):
        pipe.step(many)
    with pytest.raises(DefinitionError, match=r"step 'loose': parameter 'extra' is \*args"):
        pipe.step(loose)
    with pytest.raises(DefinitionError, match="'item' is positional-only; remove the '/'"):
        pipe.step(positional)
    assert pipe.steps == {}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"retires": 3}, "unknown option 'retires' (did you mean 'retries'?)"),
        ({"timeot": "5s"}, "unknown option 'timeot' (did you mean 'timeout'?)"),
        ({"retries": -1}, "retries=-1 must be a whole number >= 0"),
        ({"retries": True}, "retries=True must be a whole number"),
        ({"retries": 1.5}, "retries=1.5 must be a whole number"),
        ({"timeout": "soon"}, "timeout='soon' is not a duration"),
        ({"timeout": 0}, "timeout must be positive (e.g. timeout='30s')"),
        ({"timeout": -5}, "timeout=-5 is negative"),
        ({"timeout": [1]}, "timeout=[1] is not a duration"),
        ({"batch_size": 0}, "batch_size=0 must be a whole number >= 1"),
        ({"concurrency": "4"}, "concurrency='4' must be a whole number >= 1"),
        ({"executor": "threads"}, "executor='threads' is not one of process, thread"),
        ({"executor": "ray"}, "executor='ray' is not one of process, thread"),
        ({"executor": "ray"}, "Ray is chosen for a whole run: conveyor run --executor ray"),
        ({"cpus": -1}, "cpus=-1 is negative; use 0 or more"),
        ({"cpus": "two"}, "cpus='two' must be a number >= 0 (e.g. cpus=1 or cpus=0.5)"),
        ({"gpus": True}, "gpus=True must be a number >= 0"),
        ({"gpus": float("inf")}, "gpus=inf must be a number >= 0"),
        ({"memory": "2 gigs"}, "memory='2 gigs' is not a size; write e.g. '2GB', '512MiB'"),
        ({"memory": -1}, "memory=-1 is negative"),
        ({"memory": 1.5}, "memory=1.5 is not a size"),
        ({"version": 1.5}, "version=1.5 must be a non-empty string such as '2'"),
        ({"version": True}, "version=True must be a non-empty string such as '2'"),
        ({"version": ""}, "version='' must be a non-empty string such as '2'"),
        ({"version": "  "}, "version='  ' must be a non-empty string such as '2'"),
        ({"timeout": float("nan")}, "timeout=nan is not a finite duration"),
    ],
)
def test_bad_options_name_the_step_the_option_and_the_fix(
    options: dict[str, Any], fragment: str
) -> None:
    pipe = cv.Pipeline("p")

    def text(item: cv.Item) -> str:
        return item.read_text()

    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(**options)(text)
    message = str(excinfo.value)
    assert message.startswith("step 'text': ")
    assert fragment in message
    assert pipe.steps == {}


def plain(item: cv.Item) -> str:
    """A well-formed step function, for tests about options."""
    return item.read_text()


def test_an_executor_typo_gets_a_suggestion() -> None:
    with pytest.raises(DefinitionError, match=r"did you mean 'thread'\?"):
        cv.Pipeline("p").step(executor="threads")(plain)


def test_the_name_option_is_refused_with_the_reason() -> None:
    with pytest.raises(DefinitionError, match="the step's name is its function's name"):
        cv.Pipeline("p").step(name="other")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"timeout": "1m30s"}, StepOptions(timeout=90.0)),
        ({"timeout": timedelta(seconds=5)}, StepOptions(timeout=5.0)),
        ({"timeout": 2.5}, StepOptions(timeout=2.5)),
        ({"version": 2}, StepOptions(version="2")),
        ({"retries": 0, "executor": "thread"}, StepOptions(executor="thread")),
        ({"batch_size": 64, "concurrency": 4}, StepOptions(batch_size=64, concurrency=4)),
        ({"cpus": 2, "gpus": 0.5}, StepOptions(cpus=2.0, gpus=0.5)),
        ({"cpus": 0, "memory": "512MiB"}, StepOptions(cpus=0.0, memory=512 * 1024**2)),
        ({"memory": "2GB"}, StepOptions(memory=2_000_000_000)),
        ({"memory": 1024}, StepOptions(memory=1024)),
    ],
)
def test_good_options_are_normalised(options: dict[str, Any], expected: StepOptions) -> None:
    pipe = cv.Pipeline("p")

    @pipe.step(**options)
    def text(item: cv.Item) -> str:
        return item.read_text()

    assert pipe.steps["text"].options == expected


def test_an_empty_version_is_refused() -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(version="")(plain)
    assert str(excinfo.value) == ("step 'plain': version='' must be a non-empty string such as '2'")
    assert pipe.steps == {}


@pytest.mark.parametrize("timeout", [float("nan"), float("inf")])
def test_a_nan_or_infinite_timeout_is_refused(timeout: float) -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError) as excinfo:
        pipe.step(timeout=timeout)(plain)
    assert str(excinfo.value) == (
        f"step 'plain': timeout={timeout!r} is not a finite duration; write e.g. '30s' or '5m'"
    )
    assert pipe.steps == {}


# -- cycles ---------------------------------------------------------------------------------------


def test_a_three_step_cycle_is_reported_as_a_path_in_data_flow_order() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def a(c: str) -> str:
        return c

    @pipe.step
    def b(a: str) -> str:
        return a

    @pipe.step
    def c(b: str) -> str:
        return b

    with pytest.raises(DefinitionError) as excinfo:
        pipe.validate()
    assert cycle_in(str(excinfo.value)) == ["a", "b", "c", "a"]


def test_a_step_that_takes_its_own_output_is_a_cycle() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def total(item: cv.Item, total: int = 0) -> int:
        return total + 1

    with pytest.raises(DefinitionError, match="the steps form a cycle: total -> total;"):
        pipe.validate()


def test_the_cycle_path_leaves_out_steps_that_only_depend_on_the_cycle() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def downstream(b: str) -> str:
        return b

    @pipe.step
    def a(b: str, item: cv.Item) -> str:
        return b

    @pipe.step
    def b(a: str) -> str:
        return a

    with pytest.raises(DefinitionError) as excinfo:
        pipe.validate()
    path = cycle_in(str(excinfo.value))
    assert path[0] == path[-1]
    assert sorted(path[:-1]) == ["a", "b"]


def test_resource_cycles_are_reported_as_a_path() -> None:
    pipe = cv.Pipeline("p")

    @pipe.resource
    def tokenizer(model: str) -> str:
        return model

    @pipe.resource
    def model(tokenizer: str) -> str:
        return tokenizer

    @pipe.resource
    def client() -> str:
        return "ok"

    @pipe.step
    def score(item: cv.Item, model: str) -> int:
        return 1

    with pytest.raises(DefinitionError, match="the resources form a cycle") as excinfo:
        pipe.validate()
    path = cycle_in(str(excinfo.value))
    assert path[0] == path[-1]
    assert sorted(path[:-1]) == ["model", "tokenizer"]


def test_resources_cannot_take_steps_or_the_item() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def text(item: cv.Item) -> str:
        return item.read_text()

    @pipe.resource
    def model(text: str) -> str:
        return text

    with pytest.raises(DefinitionError) as excinfo:
        pipe.validate()
    assert str(excinfo.value) == (
        "resource 'model': parameter 'text' is a step or the item; a resource is built once per "
        "worker and may only take other resources"
    )


def test_an_unknown_resource_parameter_names_the_resource_and_suggests() -> None:
    pipe = cv.Pipeline("p")

    @pipe.resource
    def tokenizer() -> str:
        return "ws"

    @pipe.resource
    def model(tokenizr: str) -> str:
        return tokenizr

    @pipe.step
    def score(item: cv.Item, model: str) -> int:
        return 1

    with pytest.raises(
        DefinitionError,
        match=r"resource 'model': parameter 'tokenizr' is not a resource "
        r"\(did you mean 'tokenizer'\?\)",
    ):
        pipe.validate()


# -- code versions ---------------------------------------------------------------------------------

_PREAMBLE = """\
import conveyor as cv

pipe = cv.Pipeline("versions")

"""


def version_of(tmp_path: Path, body: str, kind: str = "steps") -> str:
    """The version of the function ``text`` in a module made of ``body``, in a new file."""
    path = tmp_path / f"module_{len(list(tmp_path.iterdir()))}.py"
    path.write_text(_PREAMBLE + textwrap.dedent(body), encoding="utf-8")
    pipe = runpy.run_path(str(path))["pipe"]
    if kind == "resources":
        return str(pipe.resources["text"].code_version)
    return str(pipe.steps["text"].version)


def test_code_version_ignores_comments_docstrings_layout_and_decorator_options(
    tmp_path: Path,
) -> None:
    plain = version_of(
        tmp_path,
        """
        @pipe.step
        def text(item):
            return item.read_text().strip()
        """,
    )
    dressed = version_of(
        tmp_path,
        '''
        # the text of each licence
        @pipe.step(retries=3, timeout="1m", executor="thread")
        def text(
            item,
        ):
            """Read the licence, without surrounding blank lines."""
            # strip: licences often end with several newlines
            return item.read_text( ).strip()  # noqa
        ''',
    )
    assert re.fullmatch(r"[0-9a-f]{16}", plain)
    assert dressed == plain


def test_code_version_changes_when_the_body_or_signature_changes(tmp_path: Path) -> None:
    versions = {
        version_of(
            tmp_path,
            f"""
            @pipe.step
            def text({params}):
                return {expression}
            """,
        )
        for params, expression in [
            ("item", "item.read_text().strip()"),
            ("item", "item.read_text().rstrip()"),
            ("item", "item.read_text()"),
            ("item, limit=10", "item.read_text().strip()"),
            ("item, limit=20", "item.read_text().strip()"),
        ]
    }
    assert len(versions) == 5


def test_version_option_overrides_the_code_hash(tmp_path: Path) -> None:
    before = version_of(
        tmp_path,
        """
        @pipe.step(version="7")
        def text(item):
            return item.read_text()
        """,
    )
    after = version_of(
        tmp_path,
        """
        @pipe.step(version="7")
        def text(item):
            return item.read_text().upper()
        """,
    )
    assert before == after == "7"


def test_resource_code_version_changes_with_its_code(tmp_path: Path) -> None:
    sources = ["return 'a'", "# returns a\n    return 'a'", "return 'b'"]
    versions = [
        version_of(tmp_path, f"@pipe.resource\ndef text():\n    {source}\n", kind="resources")
        for source in sources
    ]
    assert versions[0] == versions[1] != versions[2]


# -- graph.closure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "closure"),
    [
        (["text"], ["text"]),
        (["known"], ["text", "words", "known"]),
        (["summary"], ["text", "words", "known", "summary"]),
        (["known", "text"], ["text", "words", "known"]),
        (["words", "words"], ["text", "words"]),
        ([], []),
    ],
)
def test_closure_is_the_steps_and_what_they_need_in_order(
    names: list[str], closure: list[str]
) -> None:
    assert load("good_pipeline").graph.closure(names) == closure


def test_closure_follows_every_branch() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def left(item: cv.Item) -> int:
        return 1

    @pipe.step
    def right(item: cv.Item) -> int:
        return 2

    @pipe.step
    def middle(item: cv.Item) -> int:
        return 3

    @pipe.step
    def both(left: int, right: int) -> int:
        return left + right

    assert pipe.graph.closure(["both"]) == ["left", "right", "both"]
