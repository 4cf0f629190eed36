"""Load a pipeline from a Python file, turning every way that can fail into one clear message."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from conveyor.definition.pipeline import Pipeline
from conveyor.errors import DefinitionError, UsageError


def load_pipeline(target: str) -> tuple[Pipeline, Path]:
    """The validated pipeline in ``FILE.py`` (``FILE.py:NAME`` when it defines several)."""
    file_part, _, attr = target.partition(":") if target.count(":") == 1 else (target, "", "")
    path = Path(file_part)
    if not path.is_file():
        raise UsageError(f"pipeline file {file_part!r} does not exist")
    if path.suffix != ".py":
        raise UsageError(f"pipeline file {file_part!r} is not a .py file")
    path = path.resolve()
    name = f"conveyor_pipeline_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {file_part!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # so the pipeline can import its neighbours
    try:
        spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise DefinitionError(f"{_where(exc, path)}{exc}") from None
    except SyntaxError as exc:
        raise DefinitionError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise DefinitionError(
            f"{_where(exc, path)}importing the pipeline failed: {type(exc).__name__}: {exc}"
        ) from None
    found: dict[str, Pipeline] = {}
    for key, value in vars(module).items():
        if isinstance(value, Pipeline) and all(value is not p for p in found.values()):
            found[key] = value
    if attr:
        chosen = vars(module).get(attr)
        if not isinstance(chosen, Pipeline):
            raise DefinitionError(
                f"{file_part} has no pipeline named {attr!r}"
                + (f"; it defines {', '.join(found)}" if found else "")
            )
        pipeline = chosen
    elif len(found) == 1:
        pipeline = next(iter(found.values()))
    elif not found:
        raise DefinitionError(
            f"{file_part} defines no pipeline; create one with pipe = conveyor.Pipeline('name')"
        )
    else:
        raise DefinitionError(
            f"{file_part} defines several pipelines ({', '.join(found)}); "
            f"pick one with {file_part}:NAME"
        )
    pipeline.validate()
    return pipeline, path


def _where(exc: BaseException, path: Path) -> str:
    """``file:line: `` of the innermost frame of the pipeline file in the traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f"{path.name}:{frames[-1].lineno}: " if frames else ""
