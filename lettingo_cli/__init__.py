"""lettingo: align LLM-written user profiles with what recommenders need (LettinGo, KDD 2025).

The Python API (lettingo_cli/api.py, the README's "Python API"): `open_store`, `rows` and one function per stage,
`ingest`, `split`, `gen`, `score`, `fit`, `pair`, `evaluate`, `sft`, `dpo`, `grpo`, `export`, imported on first
use so the command line starts without them.

Seven of those names are also stage modules (lettingo_cli/split.py, ...). On the package they mean the functions:
a submodule import does not rebind them, so import from a stage module by its full name
(`from lettingo_cli.split import SplitOptions`), never as `from lettingo_cli import split`.
"""

import sys
import types

from lettingo_cli.version import __version__

API = (
    "open_store", "rows", "ingest", "split", "gen", "score", "fit", "pair", "evaluate", "sft", "dpo", "grpo", "export",
)  # fmt: skip
__all__ = ["__version__", *API]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name in API:
            from lettingo_cli import api

            return getattr(api, name)
        raise AttributeError(f"module 'lettingo_cli' has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in API and isinstance(value, types.ModuleType):
            return  # the import system binding a stage module: the API function keeps the name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
