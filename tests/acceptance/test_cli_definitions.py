"""The ``conveyor`` command facing bad pipelines and bad arguments: exit code 2, one clear
``error:`` line, never a traceback, and nothing written to the ledger."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.store import open_store

Cli = Callable[..., subprocess.CompletedProcess[str]]

REPO = Path(__file__).resolve().parents[2]
GOOD = "tests/resources/good_pipeline.py"


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of stderr, which must be an ``error:`` line; no traceback anywhere."""
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "mit.txt").write_text("MIT License\n", encoding="utf-8")
    (folder / "gpl.txt").write_text("GNU GPL and MIT\n", encoding="utf-8")
    return folder


BAD_MODULES = [
    pytest.param(
        "cyclic_steps",
        ["the steps form a cycle: a -> b -> a", "a step cannot depend on its own output"],
        id="cyclic_steps",
    ),
    pytest.param(
        "unknown_param",
        [
            "unknown_param.py:15: step 'words': parameter 'txet'",
            "(did you mean 'text'?)",
            "or give it a default value",
        ],
        id="unknown_param",
    ),
    pytest.param(
        "duplicate_step",
        ["duplicate_step.py:15: step 'text' is defined twice", "rename one of the functions"],
        id="duplicate_step",
    ),
    pytest.param(
        "not_a_function",
        [
            "not_a_function.py:10: @pipe.step was applied to 'Text', which is not a function",
            "decorate a 'def' function",
        ],
        id="not_a_function",
    ),
    pytest.param(
        "lambda_step",
        ["lambda_step.py:9: @pipe.step: a lambda has no name; use a 'def' function"],
        id="lambda_step",
    ),
    pytest.param(
        "bad_option",
        ["bad_option.py:10: step 'text': unknown option 'retires' (did you mean 'retries'?)"],
        id="bad_option",
    ),
    pytest.param(
        "negative_retries",
        ["negative_retries.py:10: step 'text': retries=-1 must be a whole number >= 0"],
        id="negative_retries",
    ),
    pytest.param(
        "bad_duration",
        ["bad_duration.py:10: step 'text': timeout='soon' is not a duration", "'30s'"],
        id="bad_duration",
    ),
    pytest.param(
        "syntax_error",
        ["syntax_error.py:18: syntax error: 'return' outside function"],
        id="syntax_error",
    ),
    pytest.param(
        "import_error",
        [
            "import_error.py:13: importing the pipeline failed: FileNotFoundError: "
            "model weights weights.bin are missing"
        ],
        id="import_error",
    ),
    pytest.param(
        "two_pipelines",
        [
            "defines several pipelines (first, second)",
            "pick one with tests/resources/two_pipelines.py:NAME",
        ],
        id="two_pipelines",
    ),
    pytest.param(
        "no_pipeline",
        ["no_pipeline.py defines no pipeline", "pipe = conveyor.Pipeline('name')"],
        id="no_pipeline",
    ),
]


def test_the_line_numbers_in_the_expected_messages_are_the_faulty_lines() -> None:
    """The decorator (or statement) at fault, so the expectations above mean something."""
    resources = REPO / "tests" / "resources"
    faulty = {
        "unknown_param": (15, "@pipe.step"),
        "duplicate_step": (15, "@pipe.step"),
        "not_a_function": (10, "@pipe.step"),
        "lambda_step": (9, "lambda item"),
        "bad_option": (10, "@pipe.step(retires=3)"),
        "negative_retries": (10, "@pipe.step(retries=-1)"),
        "bad_duration": (10, '@pipe.step(timeout="soon")'),
        "syntax_error": (18, "return pipe"),
        "import_error": (13, "raise FileNotFoundError"),
    }
    for module, (line, text) in faulty.items():
        lines = (resources / f"{module}.py").read_text(encoding="utf-8").splitlines()
        assert text in lines[line - 1], module


@pytest.mark.parametrize(("module", "fragments"), BAD_MODULES)
def test_check_reports_a_bad_pipeline_on_one_error_line(
    cli: Cli, module: str, fragments: list[str]
) -> None:
    result = cli("check", f"tests/resources/{module}.py", cwd=REPO)

    assert result.returncode == 2
    line = error_line(result)
    for fragment in fragments:
        assert fragment in line
    assert result.stdout == ""


@pytest.mark.parametrize(("module", "fragments"), BAD_MODULES)
def test_run_refuses_a_bad_pipeline_before_touching_the_ledger(
    cli: Cli, inputs: Path, tmp_path: Path, module: str, fragments: list[str]
) -> None:
    store = tmp_path / "ledger.db"
    result = cli(
        "run",
        f"tests/resources/{module}.py",
        "--input",
        str(inputs),
        "--store",
        str(store),
        cwd=REPO,
    )

    assert result.returncode == 2
    line = error_line(result)
    for fragment in fragments:
        assert fragment in line
    assert not store.exists()


def test_check_lists_the_steps_of_a_good_pipeline_in_order(cli: Cli) -> None:
    result = cli("check", GOOD, cwd=REPO)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pipeline good: 4 steps, 1 resource")
    steps = [line.split()[0] for line in lines[1:]]
    assert steps == ["text(item)", "words(text)", "known(words)", "summary(item,"]
    assert "retries=2 timeout=30.0" in lines[2]
    assert "uses vocabulary batch_size=8" in lines[3]
    assert "concurrency=2 executor=thread" in lines[4]
    assert all(" version " in line for line in lines[1:])


def test_check_picks_one_pipeline_of_several_by_name(cli: Cli) -> None:
    result = cli("check", "tests/resources/two_pipelines.py:second", cwd=REPO)
    assert result.returncode == 0, result.stderr
    header, *steps = result.stdout.splitlines()
    assert header.startswith("pipeline second: 1 step")
    assert [line.split()[0] for line in steps] == ["size(item)"]

    missing = cli("check", "tests/resources/two_pipelines.py:third", cwd=REPO)
    assert missing.returncode == 2
    assert error_line(missing) == (
        "error: tests/resources/two_pipelines.py has no pipeline named 'third'; "
        "it defines first, second"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope.py", "error: pipeline file 'nope.py' does not exist"),
        ("README.md", "error: pipeline file 'README.md' is not a .py file"),
    ],
)
def test_check_refuses_a_missing_or_non_python_file(cli: Cli, target: str, message: str) -> None:
    result = cli("check", target, cwd=REPO)
    assert result.returncode == 2
    assert error_line(result) == message


@pytest.mark.parametrize("suffix", ["", ":pipe", ":licenses"])
def test_one_pipeline_bound_to_two_names_is_one_pipeline(cli: Cli, suffix: str) -> None:
    result = cli("check", f"tests/resources/aliased_pipeline.py{suffix}", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[0] == "pipeline aliased: 1 step, 0 resources"


def test_a_long_error_stays_on_one_line_in_a_narrow_console(cli: Cli) -> None:
    result = cli("check", "tests/resources/unknown_param.py", cwd=REPO, env={"COLUMNS": "80"})
    assert result.returncode == 2
    line = error_line(result)
    assert len(line) > 80
    assert line.startswith("error: unknown_param.py:15: step 'words': parameter 'txet'")
    assert line.endswith("or give it a default value")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--input", "missing"],
            "error: input 'missing' does not exist; pass a folder, a glob or a file",
            id="missing-input",
        ),
        pytest.param(
            ["--input", "in/mit.txt"],
            "error: input 'in/mit.txt' is a .txt file; a single-file input must be .jsonl, "
            ".ndjson, .csv, .parquet (one item per row); to process files themselves pass their "
            "folder or a glob",
            id="single-text-file",
        ),
        pytest.param(
            ["--input", "in", "--workers", "-1"],
            "error: --workers -1: must be 0 (run inline) or more",
            id="negative-workers",
        ),
        pytest.param(
            ["--input", "in", "--only", "sumary"],
            "error: --only 'sumary': no such step (did you mean 'summary'?); "
            "steps: text, words, known, summary",
            id="only-typo",
        ),
        pytest.param(
            ["--input", "in", "--only", "nosuchstep"],
            "error: --only 'nosuchstep': no such step; steps: text, words, known, summary",
            id="only-unknown",
        ),
        pytest.param(
            ["--input", "in", "--force", "text,wrods"],
            "error: --force 'wrods': no such step (did you mean 'words'?); "
            "steps: text, words, known, summary",
            id="force-typo",
        ),
        pytest.param(
            ["--input", "in", "--buckets", "4"],
            "error: --buckets packs groups into batches; it needs --group-by COLUMNS",
            id="buckets-without-group-by",
        ),
        pytest.param(
            ["--input", "in", "--group-by", "a"],
            "error: --group-by splits a table; --input must be a .csv, .parquet or .jsonl file",
            id="group-by-on-a-folder",
        ),
        pytest.param(
            ["--input", "in/*.pdf"],
            "error: the glob 'in/*.pdf' matches no files",
            id="empty-glob",
        ),
        pytest.param(
            ["--input", "in", "--executor", "rya"],
            "error: --executor 'rya': must be one of local, ray (did you mean 'ray'?)",
            id="executor-typo",
        ),
        pytest.param(
            ["--input", "in", "--ray-address", "auto"],
            "error: --ray-address 'auto' needs --executor ray",
            id="ray-address-without-ray",
        ),
        pytest.param(
            ["--input", "in", "--executor", "ray", "--workers", "0"],
            "error: --workers 0 runs inline in this process; it cannot be used with Ray",
            id="ray-inline",
        ),
    ],
)
def test_run_refuses_bad_arguments_before_touching_the_ledger(
    cli: Cli, inputs: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    store = tmp_path / "ledger.db"
    result = cli("run", str(REPO / GOOD), *arguments, "--store", str(store), "--no-progress")

    assert result.returncode == 2
    assert error_line(result) == message
    assert result.stdout == ""
    assert not store.exists()
    assert not (tmp_path / ".conveyor").exists()


def test_the_executor_can_come_from_the_environment(cli: Cli, inputs: Path, tmp_path: Path) -> None:
    store = tmp_path / "ledger.db"
    env = {"CONVEYOR_EXECUTOR": "cluster", "CONVEYOR_RAY_ADDRESS": "auto"}
    result = cli("run", str(REPO / GOOD), "-i", "in", "--store", str(store), env=env)

    assert result.returncode == 2
    assert error_line(result) == "error: --executor 'cluster': must be one of local, ray"
    assert not store.exists()


def test_an_unknown_store_scheme_is_refused(cli: Cli, inputs: Path) -> None:
    result = cli("run", str(REPO / GOOD), "--input", "in", "--store", "mysql://db/conveyor")
    assert result.returncode == 2
    assert error_line(result) == (
        "error: --store: the 'mysql' store is not available; pass a SQLite file path "
        "(or sqlite:///PATH) or a postgresql://USER@HOST/DATABASE URL"
    )


def test_an_unreachable_postgres_store_is_one_clear_line(cli: Cli, inputs: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/conveyor"
    result = cli("run", str(REPO / GOOD), "--input", "in", "--store", url)
    assert result.returncode == 3
    assert error_line(result).startswith(f"error: cannot connect to the ledger {url}: ")
    assert error_line(result).endswith(
        "check that the server is running and that host and port in the URL are right"
    )
    assert "Traceback" not in result.stderr


def damaged_parquet(path: Path) -> None:
    """A Parquet file cut in half, as an interrupted copy leaves it."""
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"]}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--input", "rows.csv", "--id-field", "id"],
            "error: --id-field 'id' is not a column of rows.csv; columns: key, text",
            id="bad-id-field",
        ),
        pytest.param(
            ["--input", "damaged.parquet"],
            "error: damaged.parquet is not a readable Parquet file (",
            id="damaged-parquet",
        ),
        pytest.param(
            ["--input", "bad-header.csv"],
            "error: bad-header.csv: the header line is not valid UTF-8 (byte 5: invalid "
            "continuation byte); re-encode it",
            id="undecodable-csv-header",
        ),
    ],
)
def test_run_on_an_unusable_table_records_no_run(
    cli: Cli, tmp_path: Path, arguments: list[str], message: str
) -> None:
    (tmp_path / "rows.csv").write_text("key,text\na,x\n", encoding="utf-8")
    (tmp_path / "bad-header.csv").write_bytes(b"id,t\xe9xt\na,x\n")
    damaged_parquet(tmp_path / "damaged.parquet")
    store = tmp_path / "ledger.db"
    open_store(store).close()  # a ledger that exists: the run must not be added to it

    result = cli("run", str(REPO / GOOD), *arguments, "--store", str(store), "--no-progress")

    assert result.returncode == 2
    assert error_line(result).startswith(message)
    assert result.stdout == ""
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)


@pytest.mark.parametrize("command", ["status", "results", "runs"])
def test_a_read_only_command_on_a_missing_store_says_so_and_does_not_create_it(
    cli: Cli, tmp_path: Path, command: str
) -> None:
    store = tmp_path / "ledger.db"
    result = cli(command, "--store", str(store))

    assert result.returncode == 2
    assert error_line(result) == (
        f"error: no ledger at {store}; start a run with 'conveyor run' or pass --store"
    )
    assert result.stdout == ""
    assert not store.exists()


def test_status_without_a_store_does_not_create_the_default_ledger(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli("status")

    assert result.returncode == 2
    assert error_line(result) == (
        "error: no ledger at .conveyor/conveyor.db; start a run with 'conveyor run' or pass --store"
    )
    assert not (tmp_path / ".conveyor").exists()


def test_status_on_an_empty_store_says_there_are_no_runs(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "ledger.db"
    open_store(store).close()
    result = cli("status", "--store", str(store))

    assert result.returncode == 2
    assert error_line(result) == f"error: no runs in {store} yet; start one with 'conveyor run'"
    assert result.stdout == ""


@pytest.mark.slow
def test_results_refuses_an_unknown_format(cli: Cli, inputs: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "ledger.db")
    run = cli(
        "run",
        str(REPO / GOOD),
        "--input",
        "in",
        "--store",
        store,
        "--workers",
        "0",
        "--no-progress",
    )
    assert run.returncode == 0, run.stderr

    bad = cli("results", "--store", store, "--format", "xml")
    assert bad.returncode == 2
    assert error_line(bad) == "error: --format 'xml': choose one of jsonl, csv, parquet"
    assert bad.stdout == ""

    parquet = cli("results", "--store", store, "--format", "parquet")
    assert parquet.returncode == 2
    assert error_line(parquet) == (
        "error: --format parquet writes a binary file; pass --out FILE.parquet"
    )

    good = cli("results", "--store", store)
    assert good.returncode == 0, good.stderr
    rows = sorted((json.loads(line) for line in good.stdout.splitlines()), key=lambda r: r["id"])
    assert [(r["id"], r["known"], r["summary"]) for r in rows] == [
        ("gpl.txt", 2, "gpl.txt: 2"),
        ("mit.txt", 1, "mit.txt: 1"),
    ]
