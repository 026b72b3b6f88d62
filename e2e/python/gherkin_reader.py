"""A reader for the Gherkin the flagd testbed writes, turning feature files into runnable cases.

It understands what the testbed's `gherkin/*.feature` files use: tags, `Feature`, `Background`,
`Scenario`, `Scenario Outline` (and `Scenario Template`, `Example`), `Examples` (and
`Scenarios`) blocks with their own tags, steps with data tables and doc strings, comments, and
free description text (config.feature keeps a table inside a doc string in its description).
`Rule` blocks are refused: the testbed has none, and reading one as something else would run
the wrong steps.

Cells are unescaped as Gherkin does for `\\|`, `\\\\` and `\\n`; any other backslash stays as
written, since the testbed puts JSON into cells as `{\\"a\\": 1}` and expects the runner to read
`\\"` as a quote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

STEP_KEYWORDS = ("Given ", "When ", "Then ", "And ", "But ", "* ")
SCENARIO_KEYWORDS = ("Scenario Outline:", "Scenario Template:", "Scenario:", "Example:")
EXAMPLES_KEYWORDS = ("Examples:", "Scenarios:")


class GherkinError(ValueError):
    """A feature file this reader cannot make sense of."""


@dataclass
class Step:
    keyword: str
    text: str
    line: int
    table: list[list[str]] | None = None
    docstring: str | None = None

    def __str__(self) -> str:
        return f"{self.keyword} {self.text} (line {self.line})"


@dataclass
class Examples:
    tags: list[str]
    name: str
    line: int
    table: list[list[str]] = field(default_factory=list)


@dataclass
class Scenario:
    tags: list[str]
    name: str
    line: int
    steps: list[Step] = field(default_factory=list)
    examples: list[Examples] = field(default_factory=list)


@dataclass
class Feature:
    path: str
    name: str = ""
    tags: list[str] = field(default_factory=list)
    background: list[Step] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)

    @property
    def file(self) -> str:
        return os.path.basename(self.path)

    def cases(self) -> list["Case"]:
        """Every runnable case: a plain scenario, or one row of an outline's examples."""
        out: list[Case] = []
        for scenario in self.scenarios:
            tags = self.tags + scenario.tags
            where = f"{self.file}:{scenario.line}: {scenario.name}"
            if not scenario.examples:
                out.append(Case(where, tags, self.background + scenario.steps))
                continue
            for examples in scenario.examples:
                if not examples.table:
                    continue
                header, rows = examples.table[0], examples.table[1:]
                for number, row in enumerate(rows, start=1):
                    label = f"{examples.name} #{number}" if examples.name else f"#{number}"
                    steps = self.background + [_bind(step, header, row) for step in scenario.steps]
                    out.append(
                        Case(
                            f"{where} [{label}: {' | '.join(row)}]",
                            tags + examples.tags,
                            steps,
                        )
                    )
        return out


@dataclass
class Case:
    name: str
    tags: list[str]
    steps: list[Step]

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags


def _substitute(text: str, header: list[str], row: list[str]) -> str:
    for name, value in zip(header, row):
        text = text.replace(f"<{name}>", value)
    return text


def _bind(step: Step, header: list[str], row: list[str]) -> Step:
    return Step(
        keyword=step.keyword,
        text=_substitute(step.text, header, row),
        line=step.line,
        table=None
        if step.table is None
        else [[_substitute(cell, header, row) for cell in r] for r in step.table],
        docstring=None if step.docstring is None else _substitute(step.docstring, header, row),
    )


def parse_row(line: str) -> list[str]:
    """Splits `| a | b\\|c |` into trimmed, unescaped cells."""
    if not line.startswith("|"):
        raise GherkinError(f"not a table row: {line!r}")
    cells: list[str] = []
    cell: list[str] = []
    chars = iter(line[1:])
    closed = False
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            if nxt == "|":
                cell.append("|")
            elif nxt == "\\":
                cell.append("\\")
            elif nxt == "n":
                cell.append("\n")
            else:
                cell.append("\\" + nxt)
            closed = False
        elif c == "|":
            cells.append("".join(cell).strip())
            cell = []
            closed = True
        else:
            cell.append(c)
            closed = closed and c.isspace()
    if not closed:
        raise GherkinError(f"table row without a closing `|`: {line!r}")
    return cells


def parse(text: str, path: str = "<text>") -> Feature:
    feature = Feature(path=path)
    block = None  # None, "feature", "background", "scenario", "examples"
    pending_tags: list[str] = []
    lines = text.splitlines()
    i = 0

    def fail(number: int, message: str, line: str) -> GherkinError:
        return GherkinError(f"{path}:{number}: {message}: {line!r}")

    def current_steps() -> list[Step] | None:
        if block == "background":
            return feature.background
        if block == "scenario" and feature.scenarios:
            return feature.scenarios[-1].steps
        return None

    while i < len(lines):
        number = i + 1
        raw = lines[i]
        line = raw.strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            for tag in line.split():
                if tag.startswith("#"):
                    break
                if not tag.startswith("@") or len(tag) == 1:
                    raise fail(number, "malformed tag", line)
                pending_tags.append(tag[1:])
            continue
        if line.startswith("Feature:"):
            feature.name = line[len("Feature:") :].strip()
            feature.tags, pending_tags = pending_tags, []
            block = "feature"
            continue
        if line.startswith("Background:"):
            block = "background"
            continue
        keyword = next((k for k in SCENARIO_KEYWORDS if line.startswith(k)), None)
        if keyword:
            feature.scenarios.append(Scenario(pending_tags, line[len(keyword) :].strip(), number))
            pending_tags = []
            block = "scenario"
            continue
        keyword = next((k for k in EXAMPLES_KEYWORDS if line.startswith(k)), None)
        if keyword:
            if not feature.scenarios:
                raise fail(number, "Examples outside a scenario", line)
            feature.scenarios[-1].examples.append(
                Examples(pending_tags, line[len(keyword) :].strip(), number)
            )
            pending_tags = []
            block = "examples"
            continue
        if line.startswith("Rule:"):
            raise fail(number, "`Rule` blocks are not supported", line)
        if line.startswith("|"):
            row = parse_row(line)
            if block == "examples":
                feature.scenarios[-1].examples[-1].table.append(row)
            elif block in ("background", "scenario"):
                steps = current_steps()
                if not steps:
                    raise fail(number, "table without a step", line)
                if steps[-1].table is None:
                    steps[-1].table = []
                steps[-1].table.append(row)
            else:
                raise fail(number, "table outside a scenario", line)
            continue
        if line.startswith('"""') or line.startswith("```"):
            fence = line[:3]
            indent = len(raw) - len(raw.lstrip())
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != fence:
                body_line = lines[i]
                strip = min(len(body_line) - len(body_line.lstrip()), indent)
                body.append(body_line[strip:])
                i += 1
            if i >= len(lines):
                raise fail(number, "unterminated doc string", line)
            i += 1  # the closing fence
            if block in (None, "feature"):
                continue  # part of the feature's description
            steps = current_steps()
            if not steps:
                raise fail(number, "doc string without a step", line)
            steps[-1].docstring = "\n".join(body)
            continue
        keyword = next((k for k in STEP_KEYWORDS if line.startswith(k)), None)
        if keyword:
            steps = current_steps()
            if steps is None:
                raise fail(number, "step outside a scenario or background", line)
            steps.append(Step(keyword.strip(), line[len(keyword) :].strip(), number))
            continue
        # Free text under a header is description, unless steps or rows already started.
        started = (
            (block == "scenario" and feature.scenarios[-1].steps)
            or (block == "background" and feature.background)
            or (block == "examples" and feature.scenarios[-1].examples[-1].table)
        )
        if started:
            raise fail(number, "unrecognised line", line)
    if pending_tags:
        raise GherkinError(f"{path}: tags {pending_tags} at the end of the file tag nothing")
    return feature


def read(path: str) -> Feature:
    with open(path, encoding="utf-8") as f:
        return parse(f.read(), path)
