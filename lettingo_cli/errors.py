"""Errors a user can cause, each with its documented exit code (the root and the store's own are in
store/errors.py).

The CLI turns any of these into one line on stderr and the exit code; nothing else is printed.
"""

from lettingo_cli.store.errors import (
    EXIT_FAILURE,
    EXIT_INTEGRITY,
    EXIT_MISSING_ARTIFACT,
    EXIT_MISSING_DEPENDENCY,
    EXIT_USAGE,
    ArtifactNotFound,
    IntegrityError,
    LettingoError,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTEGRITY",
    "EXIT_MISSING_ARTIFACT",
    "EXIT_MISSING_DEPENDENCY",
    "EXIT_USAGE",
    "ArtifactNotFound",
    "InputError",
    "IntegrityError",
    "LettingoError",
    "MissingDependency",
    "UsageError",
    "require",
]


class UsageError(LettingoError):
    """Options that do not make sense together (exit 2)."""

    exit_code = EXIT_USAGE


class MissingDependency(LettingoError):
    """An optional package a stage needs is not installed (exit 5)."""

    exit_code = EXIT_MISSING_DEPENDENCY


class InputError(LettingoError):
    """A bad input file; the message names the file and, where it can, the line (exit 1)."""

    def __init__(self, path, message, line=None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


def require(module_name, package_name=None):
    """Import an optional heavy dependency, or fail with exit 5 and the package to install."""
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        package = package_name or module_name
        raise MissingDependency(
            f"this needs the '{package}' package ({exc}); run ./install.sh or pip install 'lettingo[ml]'"
        ) from exc
