"""The spec grammar and the registries: every backend and predictor module's kinds are found, a bad spec names them,
and a new kind is one new module in the package (shown with a package the test writes)."""

from __future__ import annotations

import sys

import pytest

from lettingo_cli.backends import REGISTRY as BACKENDS
from lettingo_cli.errors import UsageError
from lettingo_cli.predictors import REGISTRY as PREDICTORS
from lettingo_cli.specs import Registry, parse


def test_the_grammar():
    spec = parse("llm:gguf:model.gguf?prior=none&parallel=4")
    assert (spec.kind, spec.target, spec.options) == ("llm", "gguf:model.gguf", {"prior": "none", "parallel": "4"})
    assert spec.without("prior") == "gguf:model.gguf?parallel=4"
    named = parse("gemma-3-270m?dtype=q4_k_m", {"gemma-3-270m": "gguf:gemma-3-270m"})
    assert (named.kind, named.target, named.options) == ("gguf", "gemma-3-270m", {"dtype": "q4_k_m"})
    assert parse("openai:m@http://127.0.0.1:8080/v1").target == "m@http://127.0.0.1:8080/v1"
    with pytest.raises(UsageError, match="not a number"):
        parse("gguf:x?parallel=many").int_option("parallel", 1)


def test_the_registries_find_every_module_s_kinds():
    assert set(BACKENDS.kinds()) == {"gguf", "hf", "openai"}
    assert set(PREDICTORS.kinds()) == {"llm", "emb", "head", "reader", "predictor"}
    with pytest.raises(UsageError) as bad:
        PREDICTORS.spec("knn:5")
    for kind in PREDICTORS.kinds().values():
        assert kind.usage in str(bad.value)
    with pytest.raises(UsageError, match="gemma-3-270m \\(default\\)"):
        BACKENDS.spec("gguf")  # no target


def test_a_new_kind_is_one_new_module(tmp_path, monkeypatch):
    package = tmp_path / "my_predictors"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "majority.py").write_text(
        "from lettingo_cli.specs import Kind\n\n"
        "def load(spec, **context):\n"
        "    return ('always', spec.target, spec.options)\n\n"
        "KINDS = (Kind('always', 'always:LABEL', load),)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("my_predictors", "predictor")
    assert registry.load("always:like?why=baseline") == ("always", "like", {"why": "baseline"})
    assert registry.usage() == "always:LABEL"
    sys.modules.pop("my_predictors.majority", None)
    sys.modules.pop("my_predictors", None)
