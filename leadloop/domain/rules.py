"""The YAML loader every rule file goes through: plain data, YAML 1.2 booleans, bounded nesting, and errors
that name file, line and field (pure)."""

import re
from collections import deque
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """Base of every marketer-written file's models: unknown fields are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleFileError(Exception):
    """A rule file (cadence, scoring, routing, recycle, reps) that cannot be loaded; each problem names file, line
    and field."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for line, field, message in self.problems:
            where = f"{self.path}:{line}" if line else str(self.path)
            out.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        return out


def _line_map(
    root: yaml.Node,
    lines: dict[tuple[Any, ...], int],
    problems: list[tuple[int | None, str, str]],
) -> None:
    """The line of every field, keyed by its path; repeated keys reported.

    Breadth first and without recursion, and an aliased node is walked once, where its anchor stands:
    a self-referencing alias (`a: &x [*x]`) or a tower of aliases (billion laughs) costs no more than
    the text it is written in.
    """
    queue: deque[tuple[yaml.Node, tuple[Any, ...], int]] = deque([(root, (), root.start_mark.line + 1)])
    walked: set[int] = set()
    while queue:
        node, path, line = queue.popleft()
        lines[path] = line
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue  # a complex key fails construction, with its own line
                name = key.value
                if name in seen:
                    problems.append((key.start_mark.line + 1, _dotted((*path, name)), "duplicate key"))
                seen.add(name)
                queue.append((value, (*path, name), key.start_mark.line + 1))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                queue.append((item, (*path, index), item.start_mark.line + 1))


MAX_DEPTH = 32  # a cadence nests five levels (steps, a step, its subjects); no rule file needs more
BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses absurd nesting and reports failed conversions (a 30 February) with their line.

    PyYAML's scanner slows down with the square of the nesting and its composer recurses, so a few
    kilobytes of `[[[[…` would take seconds and then overflow the stack; stopping at MAX_DEPTH costs nothing.
    Booleans are YAML 1.2's (see below): Norway's `NO` stays a country code.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = parent.start_mark if parent is not None else None
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError, LookupError, AttributeError) as exc:  # `!!int ''` too
            value = node.value if isinstance(node, yaml.ScalarNode) else None
            what = "this value" if value is None else repr(value if len(value) <= 40 else f"{value[:40]}…")
            problem = f"cannot read {what} as {node.tag.rpartition(':')[2]}: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc


# YAML 1.1 (PyYAML) reads yes/no/on/off, any case, as booleans: `country: [NO]` became False and Norway's
# rule failed with "Input should be a valid string". YAML 1.2's core schema keeps only true and false; a
# boolean field still takes yes/no/on/off (pydantic reads those strings as booleans).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


Lines = dict[tuple[Any, ...], int]
M = TypeVar("M", bound=BaseModel)


def _load(text: str, lines: Lines, problems: list[tuple[int | None, str, str]]) -> Any:
    """The document's data, with the line of every field (and every repeated key) noted on the way."""
    loader = _Loader(text)  # a SafeLoader: plain data only
    try:
        node = loader.get_single_node()
        if isinstance(node, yaml.MappingNode):
            _line_map(node, lines, problems)  # first: construction rewrites merge keys (<<) in place
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def parse_model_lines(
    text: str, path: Path, model: type[M], shape: str, *, error: type[RuleFileError] = RuleFileError
) -> tuple[M, Lines]:
    """Parse YAML text into `model`; every problem is reported with its file, line and field.

    Args:
        shape: the message for a file that is not a mapping at all, saying what it should hold.
        error: the error raised, naming the kind of file (a cadence's is CadenceError).
    """
    lines: dict[tuple[Any, ...], int] = {}
    problems: list[tuple[int | None, str, str]] = []
    try:
        data = _load(text, lines, problems)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(path, [(mark.line + 1 if mark else None, "", f"malformed YAML: {problem}")]) from exc
    if not isinstance(data, dict):
        raise error(path, [(1, "", shape)])
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not (
                    isinstance(p, str)
                    and (p in {"str", "dict[str,str]"} or p.startswith(("list[", "dict[", "function-")))
                )
            )
            # a model-level error carries no field, so name the model it came from
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append((_line_for(loc, lines), _dotted(loc) or model.__name__.lower(), message))
    if problems:
        raise error(path, problems)
    return parsed, lines


def load_model_lines(
    path: Path, model: type[M], shape: str, *, error: type[RuleFileError] = RuleFileError
) -> tuple[M, Lines]:
    """Read and parse one YAML file into `model` (see parse_model_lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(path, [(None, "", f"not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise error(path, [(None, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_model_lines(text, path, model, shape, error=error)


def line_of(lines: Lines, *loc: Any) -> int | None:
    """The line of a field, or of the nearest enclosing one."""
    return _line_for(loc, lines)
