"""The README's figures, rendered from the results files they quote: a printed number is the measured one.

A figure in README.md is a marked span, invisible once rendered:

    <!--=paper-po|differences/aligned - base/accuracy|ci-->+0.020 [-0.018, +0.061]<!--=-->

  FILE    a results file under bench/results by its stem (`paper-po` -> paper-po.json)
  PATH    keys joined by "/" (a list's index is a number); a segment "-10:" takes a list's last 10 entries, and a
          key after it is read from each of them (the figure is then their mean); "P1 - P2" is the difference of two
          paths of the same file
  FORMAT  how the value is written (FORMATS below): e.g. `ci` writes {value, ci_low, ci_high} as "+0.020 [-0.018,
          +0.061]", `arm` an arm's accuracy with its interval, `3` three decimals, `%` a share as a percentage

    python3 -m bench.readme_figures           rewrite every marked figure from its file
    python3 -m bench.readme_figures --check   print each figure that differs from its file and exit 1; write nothing

A whole table is a block a script renders:

    <!--table=predictor|predictor_accuracy_k4-->
    | predictor | ... |

    <!--/table-->

  TABLES below names the renderers (`predictor`: bench/predictor_table.py's table of a predictor_accuracy run).

The sections between `<!--figures-->` and `<!--/figures-->` hold no number of the shape 0.123 outside a marked
span (`unmarked` lists them; tests/test_readme_figures.py fails on either).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from bench._common import RESULTS
from bench.predictor_table import difference, interval, table

README = Path(__file__).resolve().parent.parent / "README.md"
MARK = re.compile(r"<!--=(?P<file>[^|>]+)\|(?P<path>[^|>]+)\|(?P<format>[^|>]+)-->(?P<text>.*?)<!--=-->", re.S)
TABLE = re.compile(r"<!--table=(?P<kind>[^|>]+)\|(?P<file>[^>]+)-->\n(?P<text>.*?)<!--/table-->", re.S)
SECTION = re.compile(r"<!--figures-->(.*?)<!--/figures-->", re.S)
BARE_FIGURE = re.compile(r"(?<![\w.])[+-]?\d\.\d{3}(?!\d)")  # 0.123, +0.020: what a results file holds


def _number(value) -> float:
    return value["value"] if isinstance(value, dict) else value


FORMATS = {
    "ci": lambda v: interval(v["value"], [v["ci_low"], v["ci_high"]], signed=True),  # a paired difference
    "est": lambda v: interval(v["value"], [v["ci_low"], v["ci_high"]]),  # an estimate, unsigned
    "arm": lambda v: interval(v["accuracy"], v["accuracy_ci"]),  # an arm's accuracy
    "armf1": lambda v: interval(v["macro_f1"], v["macro_f1_ci"]),  # an arm's macro F1
    "diff": lambda v: difference(v, "accuracy"),  # eval's compare: {difference, ci95}
    "diff_f1": lambda v: difference(v, "macro_f1"),
    "+3": lambda v: f"{_number(v):+.3f}",
    "+2": lambda v: f"{_number(v):+.2f}",
    "4": lambda v: f"{_number(v):.4f}",
    "3": lambda v: f"{_number(v):.3f}",
    "2": lambda v: f"{_number(v):.2f}",
    "1": lambda v: f"{_number(v):.1f}",
    "0": lambda v: f"{round(_number(v)):,}",
    "%": lambda v: f"{round(100 * _number(v))}%",
    "%1": lambda v: f"{100 * _number(v):.1f}%",
    "min": lambda v: f"{round(_number(v) / 60)}",  # seconds as whole minutes
    "gb": lambda v: f"{_number(v) / 1000:.2f}",  # megabytes as gigabytes
    "min1": lambda v: f"{_number(v) / 60:.1f}",
    "met": lambda v: "met" if v else "**not met**",  # a part of a bar (true / false)
    "name": str,  # a label a run chose (e.g. its best recipe)
}


def load(stem: str, results: Path = RESULTS) -> dict:
    path = results / f"{stem}.json"
    if not path.is_file():
        raise KeyError(f"no results file {path}")
    return json.loads(path.read_text())


def lookup(data, path: str):
    """The value at PATH (see the module's doc), or a KeyError naming the first segment not found. A key that holds
    "/" itself ("16 samples/user") is found by joining segments."""
    if " - " in path and _walk(data, path.split("/")) is _MISSING:
        first, second = path.split(" - ", 1)
        return lookup(data, first.strip()) - lookup(data, second.strip())
    value = _walk(data, path.split("/"))
    if value is _MISSING:
        raise KeyError(f"{path} not found")
    return value


_MISSING = object()


def _walk(value, segments: list[str]):
    if not segments:
        return value
    segment = segments[0]
    if re.fullmatch(r"-\d+:", segment) and isinstance(value, list):  # a list's last N entries: their mean
        found = [_walk(entry, segments[1:]) for entry in value[int(segment[:-1]) :]]
        return _MISSING if not found or _MISSING in found else statistics.mean(found)
    if isinstance(value, list):
        try:
            return _walk(value[int(segment)], segments[1:])
        except (ValueError, IndexError):
            return _MISSING
    if not isinstance(value, dict):
        return _MISSING
    for end in range(1, len(segments) + 1):  # the shortest key first; longer ones for keys holding "/"
        key = "/".join(segments[:end])
        if key in value:
            found = _walk(value[key], segments[end:])
            if found is not _MISSING:
                return found
    return _MISSING


def render_figure(file: str, path: str, form: str, results: Path = RESULTS, cache: dict | None = None) -> str:
    cache = {} if cache is None else cache
    if file not in cache:
        cache[file] = load(file, results)
    if form not in FORMATS:
        raise KeyError(f"unknown format {form!r} (formats: {', '.join(FORMATS)})")
    return FORMATS[form](lookup(cache[file], path))


def _predictor_table(path: Path) -> str:
    return "\n".join(table(path).split("\n")[2:])  # without its title line


TABLES = {"predictor": _predictor_table}


def render(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """The text with every marked figure and table rendered from its file, and one line per one that changed."""
    cache: dict = {}
    changed: list[str] = []

    def table(match: re.Match) -> str:
        kind, file = match["kind"].strip(), match["file"].strip()
        if kind not in TABLES or not (results / f"{file}.json").is_file():
            raise SystemExit(f"README table {kind}|{file}: no such renderer or results file")
        rendered = TABLES[kind](results / f"{file}.json") + "\n\n"  # a blank line ends the table before the marker
        if rendered != match["text"]:
            line = text.count("\n", 0, match.start()) + 1
            changed.append(f"README.md:{line}: table {kind}|{file} differs from its file")
        return f"<!--table={match['kind']}|{match['file']}-->\n{rendered}<!--/table-->"

    text = TABLE.sub(table, text)

    def one(match: re.Match) -> str:
        file, path, form = match["file"].strip(), match["path"].strip(), match["format"].strip()
        try:
            figure = render_figure(file, path, form, results, cache)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise SystemExit(f"README figure {file}|{path}|{form}: {error}") from None
        if figure != match["text"]:
            line = text.count("\n", 0, match.start()) + 1
            changed.append(f"README.md:{line}: {file}|{path}|{form}: {match['text']!r} -> {figure!r}")
        return f"<!--={match['file']}|{match['path']}|{match['format']}-->{figure}<!--=-->"

    return MARK.sub(one, text), changed


def unmarked(text: str) -> list[str]:
    """Figures (0.123) in the README's rendered sections that no marked span covers."""
    found = []
    for section in SECTION.finditer(text):
        body = TABLE.sub(lambda m: "\n" * m[0].count("\n"), MARK.sub("", section[1]))
        start_line = text.count("\n", 0, section.start(1)) + 1
        for match in BARE_FIGURE.finditer(body):
            line = start_line + body.count("\n", 0, match.start())
            found.append(f"README.md:~{line}: {match[0]} is not rendered from a results file")
    return found


def misplaced(text: str) -> list[str]:
    """Marks that begin a line: Markdown opens a raw HTML block there and leaves the rest of the line unformatted."""
    return [
        f"README.md:{text.count(chr(10), 0, m.start()) + 1}: a figure's mark begins the line; move a word before it"
        for m in re.finditer(r"(?m)^[ \t]*<!--=", text)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list the figures that differ; exit 1 if any")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    rendered, changed = render(text)
    problems = changed + unmarked(rendered) + misplaced(rendered)
    for line in problems:
        print(line, file=sys.stderr)
    if args.check:
        sys.exit(1 if problems else 0)
    if rendered != text:
        args.readme.write_text(rendered, encoding="utf-8")
    figures, tables = len(MARK.findall(rendered)), len(TABLE.findall(rendered))
    print(f"{figures} figures and {tables} tables rendered, {len(changed)} changed", file=sys.stderr)


if __name__ == "__main__":
    main()
