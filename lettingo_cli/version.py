"""lettingo's version, read from the installed package (pyproject.toml is its one source), in a module of its own:
the package's __init__ reaches the API, which reaches every stage, so stages read the version from here."""

from lettingo_cli.store.store import lettingo_version

__version__ = lettingo_version()
