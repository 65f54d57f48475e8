"""Options declared once: a frozen dataclass whose fields carry their default and help text. A command's flags
and its `--config FILE.yaml` are derived from it (`command_options`), and the dataclass validates itself in
`__post_init__`, so an option is written in one place and checked in one place."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Optional

from lettingo_cli.errors import UsageError, require


def stable_key(params: dict, later: dict, name: str) -> dict:
    """The params of a stage's run key: options added after the stage's first release (`later`: name -> default)
    are left out while at their default, so the runs a store made before them stay cache hits."""
    return {k: v for k, v in params.items() if k not in later or v != later[k]} | {"name": name}


def option(default, help: str, flag: str | None = None):
    """A dataclass field that is also a command-line option (`flag`: e.g. "--resume/--no-resume" for booleans)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


def required(help: str, flag: str | None = None):
    """A dataclass field that is a required command-line option (no default; give it on the command line)."""
    return dataclasses.field(metadata={"help": help, "flag": flag})


def options_from_yaml(options_class, path: Path) -> dict:
    """Option values from a YAML mapping whose keys are the dataclass's fields (e.g. `lora_r: 8`), each converted
    to its field's type (YAML reads `5e-5` as a string)."""
    yaml = require("yaml", "pyyaml")
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"--config {path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {path}: expected a mapping of option: value")
    types = typing.get_type_hints(options_class)
    unknown = sorted(set(loaded) - set(types))
    if unknown:
        raise UsageError(f"--config {path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(types)}")
    return {name: _convert(path, name, value, types[name]) for name, value in loaded.items()}


def _convert(path: Path, name: str, value, wanted: type):
    if wanted is bool:
        if not isinstance(value, bool):
            raise UsageError(f"--config {path}: {name} must be true or false, not {value!r}")
        return value
    try:
        return wanted(value)
    except (TypeError, ValueError):
        raise UsageError(f"--config {path}: {name} must be a {wanted.__name__}, not {value!r}") from None


def command_options(options_class):
    """Decorate a Typer command that takes `options: OPTIONS_CLASS`: the command gets one flag per field and
    `--config FILE.yaml`; the flags given on the command line win over the file, the file over the defaults."""
    types = typing.get_type_hints(options_class)
    fields = dataclasses.fields(options_class)

    def decorate(command):
        import typer

        signature = inspect.signature(command)
        resolved = typing.get_type_hints(command, include_extras=True)  # the command's own (string) annotations
        kept = [p.replace(annotation=resolved[p.name]) for p in signature.parameters.values() if p.name != "options"]
        config = inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Optional[Path],
                typer.Option("--config", help="YAML of these options (name: value); flags given here win."),
            ],
        )
        added = [
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default,
                annotation=Annotated[
                    types[field.name],
                    typer.Option(
                        *([field.metadata["flag"]] if field.metadata.get("flag") else []), help=field.metadata["help"]
                    ),
                ],
            )
            for field in fields
        ]

        context_parameter = inspect.Parameter("_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(command)
        def wrapper(**kwargs):
            context = kwargs.pop("_context")  # Typer passes the click context to a parameter of this type
            values = {field.name: kwargs.pop(field.name) for field in fields}
            config_path = kwargs.pop("config")
            given = {name for name in values if context.get_parameter_source(name).name == "COMMANDLINE"}
            from_file = options_from_yaml(options_class, config_path) if config_path else {}
            merged = {**values, **{name: value for name, value in from_file.items() if name not in given}}
            return command(options=options_class(**merged), **kwargs)

        parameters = [*kept, context_parameter, config, *added]
        del wrapper.__wrapped__  # Typer must read the new signature, not the command's own
        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate
