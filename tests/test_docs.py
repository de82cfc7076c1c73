"""The docs (README.md and docs/*.md) against the code they describe, without servers.

- Every example filter parses with the project's parser, every example order_by too. Example
  filters are: the lines of ```sql blocks (``--`` lines are comments); the values of
  ``--filter-string`` / ``--filter``, ``filter_string=`` and ``"filter":`` in code blocks; the
  inline-code cells of a table column headed ``filter``. A filter shown as *rejected* goes in a
  ```text block or in prose.
- Every ``tracestream …`` command shown (in ```sh blocks and inline code) exists, with the options
  it shows; every ``make`` target shown in a ```sh block exists in the Makefile.
- Every ``TRACESTREAM_<GROUP>__<FIELD>`` mentioned is a setting, and every setting is listed in
  docs/operating.md's settings table.
- Every relative link resolves to a file, and its anchor (if any) to a heading of that file.

The checkers are tested on bad examples too, so a broken extractor cannot pass silently.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tracestream.cli import app
from tracestream.producers.config import SdkOptions
from tracestream.search_api.dsl import FilterError, parse_filter, parse_order_by
from tracestream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_DOC = ROOT / "docs" / "operating.md"


# --- reading markdown -------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the first line of content, 1-based


FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")


def split_markdown(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The fenced code blocks, and the other lines (number, text)."""
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    fence: str | None = None
    lang = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, lang, start, body = match.group(2), match.group(3).lower(), number + 1, []
            else:
                prose.append((number, line))
        elif match and match.group(2).startswith(fence) and not match.group(3):
            blocks.append(Block(lang, "\n".join(body), start))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"unclosed code fence opened before line {start}"
    return blocks, prose


def code_spans(line: str) -> list[str]:
    spans = []
    for match in CODE_SPAN.finditer(line):
        content = match.group(2)
        if len(match.group(1)) > 1 and content.startswith(" ") and content.endswith(" "):
            content = content[1:-1]
        spans.append(content)
    return spans


def table_cells(line: str) -> list[str]:
    """A table row's cells; a `|` inside a code span does not split."""
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def tables(prose: list[tuple[int, str]]) -> list[tuple[list[str], list[tuple[int, list[str]]]]]:
    """(header cells, [(line, cells)]) of each table among the prose lines."""
    found: list[tuple[list[str], list[tuple[int, list[str]]]]] = []
    previous = -2
    for number, line in prose:
        if not line.lstrip().startswith("|"):
            continue
        cells = table_cells(line)
        if number != previous + 1:
            found.append(([cell.lower() for cell in cells], []))
        elif not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            found[-1][1].append((number, cells))
        previous = number
    return found


# --- filters ----------------------------------------------------------------------------------

QUOTED = r"(?:\"((?:[^\"\\]|\\.)*)\"|'([^']*)')"
FILTER_OPTION = re.compile(r"--filter(?:-string)?[ =]" + QUOTED)
FILTER_KWARG = re.compile(r"filter_string\s*=\s*" + QUOTED)
FILTER_JSON = re.compile(r"\"filter\"\s*:\s*\"((?:[^\"\\]|\\.)*)\"")
ORDER_OPTION = re.compile(r"--order-by[ =]" + QUOTED)
ORDER_KWARG = re.compile(r"order_by\s*=\s*\[([^\]]*)\]")


def _quoted(match: re.Match[str]) -> str:
    return match.group(1) if match.group(1) is not None else match.group(2)


def filter_examples(text: str) -> list[tuple[int, str]]:
    """(line, filter) of every example filter of a markdown text."""
    blocks, prose = split_markdown(text)
    found: list[tuple[int, str]] = []
    for block in blocks:
        for offset, line in enumerate(block.text.splitlines()):
            number = block.line + offset
            if block.lang == "sql":
                if line.strip() and not line.strip().startswith("--"):
                    found.append((number, line.strip()))
                continue
            found += [(number, _quoted(m)) for m in FILTER_OPTION.finditer(line)]
            found += [(number, _quoted(m)) for m in FILTER_KWARG.finditer(line)]
            found += [(number, json.loads(f'"{m.group(1)}"')) for m in FILTER_JSON.finditer(line)]
    for header, rows in tables(prose):
        if "filter" not in header:
            continue
        column = header.index("filter")
        for number, cells in rows:
            cell = cells[column] if column < len(cells) else ""
            spans = code_spans(cell)
            # Only a cell that is one code span and nothing else is a filter; prose is prose.
            if len(spans) == 1 and re.fullmatch(r"(`+) ?" + re.escape(spans[0]) + r" ?\1", cell):
                found.append((number, spans[0]))
    return found


def order_by_examples(text: str) -> list[tuple[int, list[str]]]:
    blocks, _ = split_markdown(text)
    found: list[tuple[int, list[str]]] = []
    for block in blocks:
        for offset, line in enumerate(block.text.splitlines()):
            number = block.line + offset
            found += [(number, [_quoted(m)]) for m in ORDER_OPTION.finditer(line)]
            for m in ORDER_KWARG.finditer(line):
                found.append((number, [_quoted(q) for q in re.finditer(QUOTED, m.group(1))]))
    return found


def filter_problems(text: str) -> list[str]:
    problems = []
    for number, example in filter_examples(text):
        try:
            parse_filter(example)
        except FilterError as error:
            problems.append(f"line {number}: filter {example!r} does not parse: {error}")
    for number, clauses in order_by_examples(text):
        try:
            parse_order_by(clauses)
        except FilterError as error:
            problems.append(f"line {number}: order_by {clauses!r} does not parse: {error}")
    return problems


# --- commands ---------------------------------------------------------------------------------

ROOT_COMMAND: Any = typer.main.get_command(app)
MAKE_TARGETS = set(re.findall(r"^([\w.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def shell_lines(block: str) -> list[tuple[int, str]]:
    """(offset, line) of each command of a shell block, continuation lines joined."""
    lines: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, line in enumerate(block.splitlines()):
        if not pending:
            first = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((first, pending + line))
        pending = ""
    if pending:
        lines.append((first, pending))
    return lines


def _split(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    for separator, word in enumerate(words):
        if word and set(word) <= set(";&|"):
            return words[:separator]
    return words


def command_problems(words: list[str]) -> list[str]:
    """What is wrong with `tracestream …` given as words (words[0] == "tracestream")."""
    command, path = ROOT_COMMAND, ["tracestream"]
    index = 1
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("<") or word in ("...", "…"):
            return []  # a placeholder: the rest is the reader's
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            options = {
                opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")
            }
            if name not in options and name != "--help":
                known = ", ".join(sorted(options)) or "none"
                return [f"`{' '.join(path)}` has no option {name} (it has: {known})"]
            param = options.get(name)
            if param is not None and not param.is_flag and "=" not in word:
                index += 1  # the option's value
            continue
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            if word not in subcommands:
                return [
                    f"`{' '.join(path)}` has no command {word!r} (it has: {', '.join(sorted(subcommands))})"
                ]
            command = subcommands[word]
            path.append(word)
    return []


def make_problems(words: list[str]) -> list[str]:
    targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return [f"`make {t}`: no such target in the Makefile" for t in targets if t not in MAKE_TARGETS]


def shown_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line, words) of each `tracestream …` or `make …` command of sh blocks and inline code."""
    blocks, prose = split_markdown(text)
    found: list[tuple[int, list[str]]] = []
    for block in blocks:
        if block.lang not in ("sh", "bash", "shell", "console"):
            continue
        for offset, line in shell_lines(block.text):
            words = _split(line.strip().removeprefix("$ "))
            if words and words[0] in ("tracestream", ".venv/bin/tracestream", "make"):
                found.append((block.line + offset, [words[0].rsplit("/", 1)[-1], *words[1:]]))
    for number, line in prose:
        for span in code_spans(line):
            if span.startswith("tracestream ") or span.startswith("make "):
                try:
                    found.append((number, _split(span)))
                except ValueError:
                    found.append((number, span.split()))
    return found


def shown_command_problems(text: str) -> list[str]:
    problems = []
    for number, words in shown_commands(text):
        check = command_problems if words[0] == "tracestream" else make_problems
        problems += [f"line {number}: {problem}" for problem in check(words)]
    return problems


# --- settings ---------------------------------------------------------------------------------

SETTING = re.compile(r"TRACESTREAM_([A-Z]+)__([A-Z0-9_]*[A-Z0-9])")


def settings_fields() -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for group, info in Settings.model_fields.items():
        model = info.annotation
        groups[group.upper()] = {field.upper() for field in getattr(model, "model_fields", {})}
    # The SDK's own options are read by the SDK alone (tracestream.producers.config).
    groups["SDK"] = {field.name.upper() for field in dataclasses.fields(SdkOptions)}
    return groups


def setting_problems(text: str) -> list[str]:
    groups = settings_fields()
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in SETTING.finditer(line):
            group, field = match.groups()
            if group not in groups:
                problems.append(f"line {number}: {match.group(0)}: no settings group {group}__")
            elif field not in groups[group]:
                problems.append(f"line {number}: {match.group(0)}: {group}__ has no setting {field}")
    return problems


def undocumented_settings(text: str) -> list[str]:
    """Settings missing from the table whose rows start with | `GROUP__` |."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*`([A-Z]+)__`\s*\|(.*)", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`([A-Z0-9_]+)`", match.group(2)))
    missing = []
    for group, fields in settings_fields().items():
        for field in sorted(fields - rows.get(group, set())):
            missing.append(f"TRACESTREAM_{group}__{field}")
    return missing


# --- links ------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = split_markdown(path.read_text())
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose:
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def link_problems(path: Path, text: str) -> list[str]:
    _, prose = split_markdown(text)
    problems = []
    for number, line in prose:
        outside_code = CODE_SPAN.sub("", line)
        for match in LINK.finditer(outside_code):
            target = match.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            if not resolved.exists():
                problems.append(f"line {number}: link {target!r}: no file {file_part}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"line {number}: link {target!r}: no heading #{anchor} in {resolved.name}")
    return problems


# --- the docs ---------------------------------------------------------------------------------


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_filters_parse(path: Path) -> None:
    assert filter_problems(path.read_text()) == []


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_commands_exist(path: Path) -> None:
    assert shown_command_problems(path.read_text()) == []


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_settings_exist(path: Path) -> None:
    assert setting_problems(path.read_text()) == []


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_links_resolve(path: Path) -> None:
    assert link_problems(path, path.read_text()) == []


def test_every_setting_is_documented() -> None:
    assert undocumented_settings(SETTINGS_DOC.read_text()) == []


def test_the_docs_show_examples() -> None:
    """The extractors find what the docs show: an extractor that finds nothing checks nothing."""
    text = "\n".join(path.read_text() for path in DOCS)
    assert len(filter_examples(text)) >= 25
    assert len(order_by_examples(text)) >= 2
    commands = shown_commands(text)
    assert sum(words[0] == "tracestream" for _, words in commands) >= 10
    assert ["make", "run"] in [words for _, words in commands]
    assert ["make", "test"] in [words for _, words in commands]


def test_readme_keeps_the_two_commands() -> None:
    """.ci/run and users depend on these two lines of the README's "Two commands"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks, _ = split_markdown(section)
    commands = [_split(line) for block in blocks if block.lang == "sh" for _, line in shell_lines(block.text)]
    assert [c for c in commands if c] == [["make", "run"], ["make", "test"]]


# --- the checkers, on bad docs ----------------------------------------------------------------

BAD_DOC = """\
# Title

```sql
status = 'ERROR'
-- a comment line is not a filter
status = = 'ERROR'
```

```sh
tracestream traces search --filter-string "tags.env = " --max-results 5
tracestream traces search --no-such-option 3
tracestream traces frobnicate
make no-such-target
tracestream indexer retention --days 30
```

| filter | p50 |
|---|---|
| `span.nme = 'x'` | 1 |
| one hour of `timestamp_ms` | 2 |

```python
mlflow.search_traces(filter_string="feedback.rating >>= 4", order_by=["no_such_key DESC"])
```

Use `tracestream indexer retention --weeks 3`. See [nowhere](nowhere.md), [here](#title),
[there](#no-such-heading). TRACESTREAM_API__PORTT and TRACESTREAM_NOPE__X.
"""


def test_checkers_catch_bad_filters() -> None:
    problems = filter_problems(BAD_DOC)
    bad = ["status = = 'ERROR'", "tags.env = ", "span.nme = 'x'", "feedback.rating >>= 4", "no_such_key DESC"]
    for example in bad:
        assert any(repr(example) in problem or repr([example]) in problem for problem in problems), example
    assert len(problems) == len(bad)  # the good filter, the comment and the prose cell pass


def test_checkers_catch_bad_commands() -> None:
    problems = shown_command_problems(BAD_DOC)
    assert len(problems) == 4, problems
    assert any("no option --no-such-option" in p for p in problems)
    assert any("no command 'frobnicate'" in p for p in problems)
    assert any("no such target" in p for p in problems)
    assert any("no option --weeks" in p for p in problems)


def test_checkers_catch_bad_settings_and_links(tmp_path: Path) -> None:
    problems = setting_problems(BAD_DOC)
    assert len(problems) == 2 and "PORTT" in problems[0] and "NOPE" in problems[1]
    doc = tmp_path / "doc.md"
    doc.write_text(BAD_DOC)
    problems = link_problems(doc, BAD_DOC)
    assert len(problems) == 2 and "nowhere.md" in problems[0] and "no-such-heading" in problems[1]
    assert "TRACESTREAM_API__PORT" in undocumented_settings("| `API__` | `HOST` |")


def test_slug_is_githubs() -> None:
    assert slug("The local stack (`infra/`)") == "the-local-stack-infra"
    assert slug("Late, orphan and duplicate data") == "late-orphan-and-duplicate-data"
    assert slug("Kept as MLflow has them, though surprising") == "kept-as-mlflow-has-them-though-surprising"
