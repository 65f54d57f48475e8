"""lettingo from Python: the stages of the command line as functions, for notebooks and scripts.

    import lettingo_cli as lg

    store = lg.open_store("lettingo.db")
    dataset = lg.ingest(store, "movielens", "../shared/data/movielens-100k")
    split = lg.split(store, dataset, recent=0, targets=4)
    profiles = lg.gen(store, split, users="test", generator="stats-text")
    result = lg.evaluate(store, profiles, predictor="reader:bow")
    print(result.ref, result.report["accuracy"])
    for row in lg.rows(store, profiles):
        ...

Each function takes the command's options as keyword arguments (the same names, the same dataclasses and checks)
and its input as an Artifact, a reference (`name@v2`, `kind:name`, an id) or None for the latest of the kind it
needs; it returns the new Artifact (`ref`, `params`, `counts`, `report`), or the cached one when the same run
already finished. Errors are the CLI's: LettingoError and its subclasses, each with its exit code. The command
line calls these same functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lettingo_cli.errors import ArtifactNotFound, UsageError
from lettingo_cli.store import Artifact, Store, check_name
from lettingo_cli.store.artifact import PRIMARY_TABLE, ROW_TABLES

__all__ = [
    "open_store",
    "rows",
    "ingest",
    "split",
    "gen",
    "score",
    "fit",
    "pair",
    "evaluate",
    "sft",
    "dpo",
    "grpo",
    "export",
]


def open_store(path: str | Path = "lettingo.db", create: bool = True) -> Store:
    """The store at `path` (a SQLite file, its blobs beside it), created if it does not exist and `create`."""
    return Store(Path(path), create=create)


def rows(store: Store, artifact: Artifact, table: str | None = None) -> Iterator[dict]:
    """An artifact's rows as dicts in their canonical order: its main table (a dataset's interactions, a
    split's users, profiles, scores, pairs) or another of its tables (`items`, `split_interactions`, ...)."""
    tables = ROW_TABLES.get(artifact.kind, {})
    table = table or PRIMARY_TABLE.get(artifact.kind)
    if table not in tables:
        raise UsageError(f"a {artifact.kind} artifact has {'tables ' + ', '.join(tables) if tables else 'no rows'}")
    return store.rows(artifact, table)


def resolve(store: Store, given: Artifact | str | int | None, kind: str) -> Artifact:
    """The artifact a stage reads: one given, the one a reference names, or the latest of `kind`."""
    if isinstance(given, Artifact):
        if given.kind != kind:
            raise ArtifactNotFound(f"{given.ref} is a {given.kind}, but a {kind} is needed here")
        return given
    if given is None:
        latest = store.latest(kind)
        if latest is None:
            raise ArtifactNotFound(f"no {kind} in {store.path}; create one first or name one")
        return latest
    if not str(given).strip():  # an empty "$(...)" in a script must not silently mean "the latest"
        raise UsageError(f"empty {kind} reference")
    return store.resolve(str(given), kind=kind)


def _name(given: str | None, derived: str) -> str:
    return check_name(given or derived)


# --- the stages, in pipeline order ------------------------------------------------------------------------------


def ingest(
    store: Store,
    source_format: str,
    source: str | Path | None = None,
    *,
    name: str | None = None,
    force: bool = False,
    download: str | None = None,
    url: str | None = None,
    meta: str | Path | None = None,
    user: str = "user",
    item: str = "item",
    rating: str = "rating",
    time: str | None = None,
    title: str | None = None,
    text: tuple[str, ...] = (),
    delimiter: str = ",",
) -> Artifact:
    """A dataset artifact from `source_format` movielens (a folder, or `download="ml-100k"`), amazon (reviews
    file, `meta=`), csv or jsonl (a file; `user`/`item`/`rating`/`time`/`title`/`text` name its columns)."""
    from lettingo_cli.ingest import Source, ingest_source

    given = Source(source_format, Path(source) if source else None, download, url, Path(meta) if meta else None)
    columns = {"user": user, "item": item, "rating": rating, "time": time, "title": title, "text": tuple(text)}
    return ingest_source(store, given, columns, delimiter, name, force)


def split(
    store: Store, dataset: Artifact | str | None = None, *, name: str | None = None, force: bool = False, **options
) -> Artifact:
    """Train/test users and each user's profile history / recent / targets; options: SplitOptions' fields."""
    from lettingo_cli.split import SplitOptions, split_dataset

    checked = SplitOptions(**options)  # options are checked before the store is read
    source = resolve(store, dataset, "dataset")
    return split_dataset(store, source, _name(name, source.name), checked, force=force)


def gen(
    store: Store,
    split: Artifact | str | None = None,
    *,
    users: str = "all",
    listed: list[str] | None = None,
    generator: str | list[str] | None = None,
    prompt: str | Path | None = None,
    name: str | None = None,
    force: bool = False,
    **options,
) -> Artifact:
    """Profiles of the selected users (`users`: all | train | test | N | id,id,...; or `listed` ids), N per
    generator; options: GenOptions' fields (n, temperature, max_tokens, history, seed)."""
    from lettingo_cli.gen import GenOptions, generate_profiles
    from lettingo_cli.split_data import select_users

    gen_options = GenOptions(**options)
    source = resolve(store, split, "split")
    selected = select_users(store, source, "-" if listed is not None else users, listed)
    specs = [generator] if isinstance(generator, str) or generator is None else list(generator)
    derived = f"{source.name}-{users if users in ('all', 'train', 'test') and listed is None else 'users'}"
    return generate_profiles(
        store, source, specs, selected, gen_options, _name(name, derived), str(prompt) if prompt else None, force
    )


def score(
    store: Store,
    profiles: Artifact | str | None = None,
    *,
    predictor: str | None = None,
    targets: int = 1,
    calibrate: bool = False,
    name: str | None = None,
    force: bool = False,
) -> Artifact:
    """Each profile judged on each user's targets by the predictor (default: the split's protocol's)."""
    from lettingo_cli.score import score_with

    source = resolve(store, profiles, "profiles")
    return score_with(store, source, predictor, targets, _name(name, source.name), calibrate, force)


def fit(
    store: Store, split: Artifact | str | None = None, *, predictor: str = "reader:bow", force: bool = False
) -> Artifact:
    """A trained predictor (reader:bow, head:minilm) fitted once on the split's train users (score and evaluate
    reuse it)."""
    from lettingo_cli.predictors.fitted import fit_predictor

    source = resolve(store, split, "split")
    return fit_predictor(predictor, store, source, force=force)


def pair(
    store: Store,
    scores: list[Artifact | str] | Artifact | str | None = None,
    *,
    jsonl: str | Path | None = None,
    name: str | None = None,
    force: bool = False,
    allow_model_free: bool = False,
    **options,
) -> Artifact:
    """Preference pairs from scored profiles (one scores artifact, or a list of them: a pool, with `for_generator`);
    options: PairOptions' fields (rule, margin, max_per_user, max_length_ratio, max_stated_error, for_generator).
    Profiles of a model-free writer (history-text, stats-text, swap) are refused unless `allow_model_free`."""
    from lettingo_cli.pair import PairOptions, make_pairs

    checked = PairOptions(**options)
    given = scores if isinstance(scores, list) else [scores]
    sources = [resolve(store, source, "scores") for source in given]
    out = Path(jsonl) if jsonl else None
    pool = sources if len(sources) > 1 else sources[0]
    named = _name(name, sources[0].name)
    return make_pairs(store, pool, checked, named, jsonl=out, force=force, allow_model_free=allow_model_free)


def evaluate(
    store: Store,
    profiles: Artifact | str | None = None,
    *,
    no_profile: bool = False,
    split: Artifact | str | None = None,
    predictor: str | None = None,
    users: str = "test",
    listed: list[str] | None = None,
    targets: int = 1,
    calibrate: bool = False,
    name: str | None = None,
    force: bool = False,
) -> Artifact:
    """An eval artifact: accuracy, macro / weighted F1 with 95% intervals, confusion, the protocol's baselines.
    The users of `users` (see split.select_users) that have profiles are scored (the score stage, cached), then
    evaluated; `no_profile=True` evaluates the predictor without a profile on `split`."""
    from lettingo_cli.eval import default_name, evaluate_scores
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.score import ScoreOptions, score_profiles
    from lettingo_cli.split_data import select_users

    if no_profile and profiles is not None:
        raise UsageError("give either PROFILES or --no-profile, not both")
    ScoreOptions(predictor, targets, calibrate)  # checked before the store is read
    source_profiles = None if no_profile else resolve(store, profiles, "profiles")
    source_split = resolve(store, split, "split") if no_profile else store.get(source_profiles.params["split"])
    selector = "-" if listed is not None else users
    selected = select_users(store, source_split, selector, listed)
    if source_profiles is not None:
        have = set(source_profiles.params["users"])
        selected = [u for u in selected if u in have]
        if not selected:
            raise UsageError(f"{source_profiles.ref} has no profiles of the {selector} users")
    base = default_name(source_split, source_profiles, selector)
    scorer = make_predictor(predictor, store, source_split, calibrate)
    try:
        scores = score_profiles(store, source_split, scorer, source_profiles, selected, targets, base, force=force)
    finally:
        scorer.close()
    return evaluate_scores(store, scores, _name(name, base), selector, force=force)


def sft(
    store: Store,
    pools: list[Artifact | str] | Artifact | str | None = None,
    *,
    no_profile_scores: Artifact | str | None = None,
    base: str | None = None,
    resume: bool = False,
    name: str | None = None,
    force: bool = False,
    allow_model_free: bool = False,
    **options,
) -> Artifact | None:
    """A LoRA adapter SFT-trained on each train user's best-scored profile in a pool of scores artifacts (several
    writers, several prompts); options: SFTOptions' fields (min_gain, max_stated_error, min_titles_found, ...).
    Profiles of a model-free writer are refused unless `allow_model_free`. None on a worker rank under
    `accelerate launch`."""
    from lettingo_cli.sft import train_sft
    from lettingo_cli.training.common import resolve_base
    from lettingo_cli.training.options import SFTOptions

    checked = SFTOptions(**options)
    given = pools if isinstance(pools, list) else [pools]
    sources = [resolve(store, pool, "scores") for pool in given]
    baseline = resolve(store, no_profile_scores, "scores") if no_profile_scores is not None else None
    base_dir = resolve_base(base, store)
    derived = f"{sources[0].name}-sft"
    return train_sft(
        store, sources, base_dir, checked, _name(name, derived), baseline, force=force, resume=resume,
        allow_model_free=allow_model_free,
    )  # fmt: skip


def dpo(
    store: Store,
    pairs: Artifact | str | None = None,
    *,
    base: str | None = None,
    resume: bool = False,
    name: str | None = None,
    force: bool = False,
    **options,
) -> Artifact | None:
    """A LoRA adapter DPO-trained on the pairs; options: DPOOptions' fields. None on a worker rank under
    `accelerate launch` (rank 0 writes the artifact)."""
    from lettingo_cli.dpo import train_dpo
    from lettingo_cli.training.common import resolve_base
    from lettingo_cli.training.options import DPOOptions

    checked = DPOOptions(**options)
    source = resolve(store, pairs, "pairs")
    base_dir = resolve_base(base, store)
    return train_dpo(store, source, base_dir, checked, _name(name, source.name), force=force, resume=resume)


def grpo(
    store: Store,
    split: Artifact | str | None = None,
    *,
    base: str | None = None,
    resume: bool = False,
    name: str | None = None,
    force: bool = False,
    **options,
) -> Artifact | None:
    """A LoRA adapter GRPO-trained online, the frozen predictor judging the profiles it samples for the split's
    train users; options: GRPOOptions' fields (predictor, generations, max_steps, ...). None on a worker rank under
    `accelerate launch`."""
    from lettingo_cli.grpo import train_grpo
    from lettingo_cli.training.common import resolve_base
    from lettingo_cli.training.options import GRPOOptions

    checked = GRPOOptions(**options)
    source = resolve(store, split, "split")
    base_dir = resolve_base(base, store)
    return train_grpo(store, source, base_dir, checked, _name(name, f"{source.name}-grpo"), force=force, resume=resume)


def export(
    store: Store,
    adapter: Artifact | str | None = None,
    *,
    out: str | Path | None = None,
    name: str | None = None,
    force: bool = False,
    **options,
) -> Artifact:
    """The adapter merged, converted to GGUF, quantized and verified; `out` also gets the files, a model card,
    an Ollama Modelfile and the prompt template. options: ExportOptions' fields (quant="q8_0,q4_k_m",
    lora_only, prompts, continuation)."""
    from lettingo_cli.export import ExportOptions, check_dependencies, export_adapter

    check_dependencies()  # exit 5 before anything about the store
    checked = ExportOptions(**options)
    source = resolve(store, adapter, "adapter")
    return export_adapter(store, source, checked, _name(name, source.name), out=Path(out) if out else None, force=force)
