"""One grammar for what `--generator` and `--predictor` name, and the registries that find the kinds.

A spec is `KIND:TARGET[?key=value&...]` (`gguf:model.gguf?parallel=8`, `llm:gemma-3-270m?prior=none`,
`reader:bow?profiles=po-train`); a bare name a registry knows as an alias (`gemma-3-270m`) stands for its spec.
Each module of lettingo_cli/backends/ and lettingo_cli/predictors/ declares the kinds it serves in a module-level
`KINDS` tuple (its heavy imports stay inside its functions), so adding a backend or a predictor is one new
module: the registry imports the package's modules when a spec is first read and collects their kinds; the
error for a bad spec and `lettingo doctor` list them.

Plugins from outside: an installed distribution adds kinds through a package entry point in the group
`lettingo.backends` or `lettingo.predictors` (as llm's plugins do), naming a module with a `KINDS` tuple, or the
tuple itself:

    [project.entry-points."lettingo.backends"]
    echo = "lettingo_echo"
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from urllib.parse import parse_qsl

from lettingo_cli.errors import UsageError


@dataclass(frozen=True)
class Spec:
    text: str  # what the user wrote
    kind: str
    target: str
    options: dict = field(default_factory=dict)

    @property
    def style(self) -> bool | None:
        """style=chat|completion: True for chat, False for completion, None when not given."""
        style = self.options.get("style")
        if style not in (None, "chat", "completion"):
            raise UsageError(f"{self.text}: style must be chat or completion")
        return None if style is None else style == "chat"

    def choice_option(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.options.get(name)
        if value not in choices:
            raise UsageError(f"{self.text}: {name} must be {' or '.join(choices)}")
        return value

    def int_option(self, name: str, default: int) -> int:
        value = self.options.get(name, default)
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"{self.text}: {name}={value!r} is not a number") from None

    def float_option(self, name: str) -> float:
        value = self.options.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{self.text}: {name}={value!r} is not a number") from None

    def without(self, *names: str) -> str:
        """The spec's text without some of its options (e.g. a predictor's own, before the backend reads it)."""
        kept = "&".join(f"{k}={v}" for k, v in self.options.items() if k not in names)
        return f"{self.target}" + (f"?{kept}" if kept else "")


def parse(text: str, aliases: dict[str, str] | None = None) -> Spec:
    """`KIND:TARGET?key=value&...` -> Spec; a bare alias (`gemma-3-270m?dtype=q4_k_m`) -> the spec it stands for."""
    text = text.strip()
    body, _, query = text.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if aliases and body in aliases:
        kind, _, target = aliases[body].partition(":")
        return Spec(text, kind, target, options)
    kind, sep, target = body.partition(":")
    return Spec(text, kind if sep else "", target if sep else body, options)


@dataclass(frozen=True)
class Kind:
    """One kind of backend or predictor: its name, the usage line the help and errors show, and its loader."""

    name: str
    usage: str
    load: Callable
    aliases: tuple[str, ...] = ()  # bare names that mean `name:alias` (the named models)
    rank: int = 1  # where the usage line lists it (lower first: the default's kind)
    # a kind fitted once and stored (stage `fit`): fit(spec, store, split, force) -> the predictor artifact, and
    # from_artifact(store, split, artifact) -> the predictor that artifact holds
    fit: Callable | None = None
    from_artifact: Callable | None = None
    # a generator that writes without a model (the history written out, another user's profiles): its profiles are
    # controls, never a writer a pool may learn from (pair and sft refuse them unless told otherwise)
    model_free: bool = False


class Registry:
    """The kinds declared by the modules of one package and by the installed plugins of one entry-point group (see
    the module docstring)."""

    def __init__(self, package: str, what: str, group: str) -> None:
        self.package, self.what, self.group = package, what, group
        self._kinds: dict[str, Kind] | None = None

    def kinds(self) -> dict[str, Kind]:
        if self._kinds is None:
            package = importlib.import_module(self.package)
            declared = [
                (
                    f"{self.package}.{module.name}",
                    getattr(importlib.import_module(f"{self.package}.{module.name}"), "KINDS", ()),
                )
                for module in pkgutil.iter_modules(package.__path__)
            ]
            declared += [
                (f"plugin {point.value}", self._plugin_kinds(point)) for point in entry_points(group=self.group)
            ]
            found: dict[str, Kind] = {}
            for source, kinds in declared:
                for kind in kinds:
                    if kind.name in found:
                        raise UsageError(f"two {self.what} kinds named {kind.name!r} (the second from {source})")
                    found[kind.name] = kind
            self._kinds = found
        return self._kinds

    def _plugin_kinds(self, point) -> tuple[Kind, ...]:
        """The kinds an entry point names: a module with a `KINDS` tuple, or the tuple itself."""
        try:
            loaded = point.load()
        except Exception as error:  # a broken plugin must say which, not take the command line down with it
            raise UsageError(f"the {self.what} plugin {point.name} ({point.value}) does not load: {error}") from None
        kinds = tuple(getattr(loaded, "KINDS", loaded))
        if not all(isinstance(kind, Kind) for kind in kinds):
            raise UsageError(f"the {self.what} plugin {point.name} ({point.value}) declares no lettingo Kind tuple")
        return kinds

    def aliases(self) -> dict[str, str]:
        return {alias: f"{kind.name}:{alias}" for kind in self.kinds().values() for alias in kind.aliases}

    def usage(self) -> str:
        kinds = sorted(self.kinds().values(), key=lambda kind: (kind.rank, kind.name))
        return ", ".join(kind.usage for kind in kinds)

    def spec(self, text: str) -> tuple[Spec, Kind]:
        """The parsed spec and its kind; an unknown kind is a usage error that lists the registered ones."""
        spec = parse(text, self.aliases())
        kind = self.kinds().get(spec.kind)
        if kind is None or not spec.target:
            raise UsageError(f"bad {self.what} {text!r}: use {self.usage()}")
        return spec, kind

    def model_free(self, text: str) -> bool:
        """Whether a spec names a kind declared model-free (an unknown kind, e.g. a plugin since removed: no)."""
        kind = self.kinds().get(parse(text, self.aliases()).kind)
        return kind is not None and kind.model_free

    def load(self, text: str, **context):
        spec, kind = self.spec(text)
        return kind.load(spec, **context)
