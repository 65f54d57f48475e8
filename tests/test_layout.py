"""The house's structure: no import cycles (type hints included), stages as siblings, a store that knows no stage
and imports nothing above it, a thin CLI, and every stage through the one stage protocol."""

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


def _imports(path: Path, modules: dict[str, Path], type_hints: bool = True) -> set[str]:
    """The package modules a file imports, at any level (a lazy import inside a function counts too), and with
    `type_hints` those under `if TYPE_CHECKING:` (they do not run, but a circle through them is still a circle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if not type_hints and isinstance(node, ast.If) and _is_type_checking(node)
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


# Each stage's module, and the modules only that stage uses (its companions).
STAGES = {
    "ingest": ("download",),
    "split": (),
    "gen": (),
    "score": (),
    "pair": (),
    "eval": (),
    "sft": (),
    "dpo": (),
    "grpo": (),
    "export": ("export_verify", "model_card"),
}
# What stands above the stages and may call several: the command line, the Python API, the tools around them.
ABOVE = ("__init__", "__main__", "api", "cli", "cli_common", "cli_ingest", "cli_tools", "profile_file", "doctor")


def _family(module: str) -> str | None:
    short = module.removeprefix("lettingo_cli.")
    return next((stage for stage, companions in STAGES.items() if short in (stage, *companions)), None)


def test_stages_are_siblings():
    """A stage (with its companions) imports the store and shared modules, never another stage; no shared module
    imports a stage."""
    modules = _modules()
    assert all(f"lettingo_cli.{name}" in modules for stage in STAGES for name in (stage, *STAGES[stage]))
    offenders = []
    for name, path in modules.items():
        if name.removeprefix("lettingo_cli.") in ABOVE:
            continue
        own = _family(name)
        for target in _imports(path, modules):
            family = _family(target)
            if family is not None and family != own:
                offenders.append(f"{name} -> {target}")
    assert offenders == []


def test_the_store_imports_nothing_above_it():
    modules = _modules()
    store = {name: path for name, path in modules.items() if name.startswith("lettingo_cli.store")}
    assert len(store) >= 6
    outside = {f"{name} -> {t}" for name, path in store.items() for t in _imports(path, modules) if t not in store}
    assert outside == set()
    for path in store.values():  # nor by a name the walk above cannot see
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"lettingo_cli\.(?!store\b)", text), path.name


# Stage names that are not also artifact kinds (the store may well compare kinds: "split", "export", "eval").
STAGE_ONLY_NAMES = {"ingest", "gen", "score", "pair", "dpo", "grpo", "sft", "fit"}


def _compared_constants(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                elements = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                found |= {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        elif isinstance(node, ast.Dict):  # a table keyed by stage name is a branch on it too
            found |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return found


def test_no_branch_on_a_stage_name_downstream_of_training():
    """export, its companions and the store read what trained an adapter from the adapter and its lineage."""
    paths = [REPO / "lettingo_cli" / f"{n}.py" for n in ("export", "export_verify", "model_card", "export_layout")]
    paths += sorted((REPO / "store").glob("*.py"))
    for path in paths:
        branches = _compared_constants(ast.parse(path.read_text(encoding="utf-8"))) & STAGE_ONLY_NAMES
        assert branches == set(), (path.name, branches)
    # the check sees such a branch where there is one
    assert _compared_constants(ast.parse('x = 1 if training["stage"] == "grpo" else 2')) == {"grpo"}


def test_bench_is_a_package_of_public_calls():
    """bench/ runs as `python -m bench.NAME`: no sys.path edits, no imports from tests/ or of private names, no SQL;
    experiments/ the same."""
    scripts = sorted((REPO / "bench").glob("*.py")) + sorted((REPO / "experiments").glob("*.py"))
    assert (REPO / "bench" / "__init__.py").exists() and len(scripts) > 20
    for path in scripts:
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(REPO))
        assert "sys.path" not in text, where
        assert not re.search(r"^\s*(from|import) tests\b", text, re.M), where
        assert not re.search(r"^\s*from lettingo_cli[\w.]* import .*\b_[a-z]", text, re.M), where
        for statement in ("SELECT ", "INSERT INTO", ".db.query", ".db.execute", ".db["):
            assert statement not in text, (where, statement)
