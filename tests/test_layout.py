"""The house's structure: no import cycles, a thin CLI, and every stage through the one stage protocol."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by its import name (store/ installs as lettingo_cli.store)."""
    found = {}
    for root, package in ((REPO / "lettingo_cli", "lettingo_cli"), (REPO / "store", "lettingo_cli.store")):
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules a file imports, at any level (a lazy import inside a function counts too); imports
    under `if TYPE_CHECKING:` do not run and do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for child in node.body
        for n in ast.walk(child)
    }
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    targets.add(submodule)
                elif node.module in modules:
                    targets.add(node.module)
    return targets


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert "lettingo_cli.store.stage" in graph and "lettingo_cli.predictors.llm" in graph  # the walk saw both parts
    cycles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cli_holds_no_sql_and_no_stage_protocol():
    for path in sorted((REPO / "lettingo_cli").glob("cli*.py")):  # cli.py and its command-group modules
        cli = path.read_text(encoding="utf-8")
        for marker in ("SELECT ", "INSERT ", "DELETE ", ".db.", ".db[", "start_run", "finalize(", "run_key("):
            assert marker not in cli, (path.name, marker)
    assert len((REPO / "lettingo_cli" / "cli.py").read_text(encoding="utf-8").splitlines()) < 500  # thin


def test_no_sql_outside_the_store():
    """Statements, connections and WHERE fragments live in store/; lettingo_cli filters rows with keywords."""
    for path in sorted((REPO / "lettingo_cli").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for statement in ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", ".db.query", ".db.execute", ".db["):
            assert statement not in text, (str(path.relative_to(REPO)), statement)
        assert not re.search(r"\.rows\([^)]*,\s*\"[a-z_]+\",\s*[\"']", text), str(path.relative_to(REPO))


def test_only_the_store_opens_and_seals_runs():
    """The stage protocol exists once (store/stage.py): no stage starts, seals or discards a run by hand."""
    by_hand = ("start_run(", ".begin(", ".finalize(", ".discard(", ".cached(", "store.pending(", ".db.", ".db[")
    offenders = []
    for path in (REPO / "lettingo_cli").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(REPO)}: {marker}" for marker in by_hand if marker in text]
    assert offenders == []
