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
    assert set(BACKENDS.kinds()) == {"gguf", "hf", "openai", "written", "swap"}  # the writers without a model too
    written = parse("history-text?tokens=9", BACKENDS.aliases())
    assert (written.kind, written.target, written.options) == ("written", "history-text", {"tokens": "9"})
    # the kinds that write without a model say so (pair and sft refuse their profiles by default)
    free = ("history-text?tokens=9", "stats-text", "swap:p@v1")
    with_a_model = ("gemma-3-270m", "gguf:x.gguf", "openai:m@http://h/v1", "nosuch:kind")
    assert all(BACKENDS.model_free(text) for text in free)
    assert not any(BACKENDS.model_free(text) for text in with_a_model)
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
    registry = Registry("my_predictors", "predictor", "lettingo.test-none")
    assert registry.load("always:like?why=baseline") == ("always", "like", {"why": "baseline"})
    assert registry.usage() == "always:LABEL"
    sys.modules.pop("my_predictors.majority", None)
    sys.modules.pop("my_predictors", None)


ECHO_PLUGIN = '''"""A generator from outside lettingo (a plugin test): writes back the prompt's newest rating."""

from lettingo_cli.backends.base import Generation
from lettingo_cli.specs import Kind


class EchoBackend:
    chat = False
    exact_label_logprobs = False
    streams_requests = True

    def __init__(self, spec):
        self.spec, self.name, self.details = spec.text, f"echo:{spec.target}", {"backend": "echo"}

    def generate(self, requests, options):
        for index, request in enumerate(requests):
            newest = [line for line in request.prompt.splitlines() if line.startswith("- ")][-1]
            yield index, Generation(f"{self.name} read {newest}", 6, True)

    def close(self):
        pass


KINDS = (Kind("echo", "echo:WORD (an outside plugin)", lambda spec, **context: EchoBackend(spec)),)
'''


def _wheel(folder, name: str, module: str, source: str, group: str, kind: str):
    """A wheel of one module with one entry point, written as pip writes one (no build backend needed)."""
    import zipfile

    dist = f"{name.replace('-', '_')}-0.1"
    files = {
        f"{module}.py": source,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}.dist-info/entry_points.txt": f"[{group}]\n{kind} = {module}\n",
    }
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}.dist-info/RECORD"])
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_an_outside_plugin_is_found_through_its_entry_point(tmp_path):
    """A distribution installed by pip (into a folder of its own) adds a generator kind through the entry-point group
    lettingo.backends: the registry and `lettingo doctor` list it, and `lettingo profile` writes with it."""
    import os
    import subprocess

    wheel = _wheel(tmp_path, "lettingo-echo", "lettingo_echo", ECHO_PLUGIN, "lettingo.backends", "echo")
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target),
         str(wheel)], capture_output=True, text=True,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "echo" not in BACKENDS.kinds()  # not in this process: only where the plugin is installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    lettingo = [sys.executable, "-m", "lettingo_cli"]
    doctor = subprocess.run([*lettingo, "doctor"], capture_output=True, text=True, env=env)
    assert "ok   generator echo: echo:WORD (an outside plugin) (lettingo_echo)" in doctor.stdout + doctor.stderr
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("user,item,rating,time,title\nu1,i1,5,1,Heat\nu1,i2,2,2,Casino\nu2,i1,4,1,Heat\n")
    made = subprocess.run(
        [*lettingo, "profile", str(ratings), "--generator", "echo:hi", "--title", "title", "--time", "time"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert 'user u1:\necho:hi read - "Casino": disliked (2/5)' in made.stdout
    assert 'user u2:\necho:hi read - "Heat": liked (4/5)' in made.stdout
    wrong = subprocess.run([*lettingo, "profile", str(ratings), "--generator", "nope:x"], capture_output=True,
                           text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert wrong.returncode == 2 and "echo:WORD (an outside plugin)" in wrong.stderr  # the usage lists it too
