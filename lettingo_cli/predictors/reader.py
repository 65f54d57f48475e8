"""The trained reader `reader:bow`: a small network that reads the profile's words, fitted once on the split's
TRAIN users and stored as a `predictor` artifact (stage `fit`), then frozen and reused by every score and eval.

It is built for the profile-only protocol (a `--recent 0` split: the profile is the user's whole
representation), where a predictor must read the profile to know the user at all. What it sees of one
(profile, target item):
  the profile  its words (lowercased; numbers such as "4/5" are words), hashed into buckets and averaged into a
               learned 16-number vector: an average of word vectors can count ("liked" in 70% of the lines,
               "5/5" in 40%) as well as name ("horror", "generous")
  the item     the words of its attributes (genres, categories; not its title) the same way, its mean rating
               over the split's non-target rows (shrunk towards the global mean) and its popularity
  their match  the elementwise product of the two vectors, so a profile word can speak for or against an item
               word ("loves ... sci-fi" for a Sci-Fi item)
  its values   the values the profile states the way the split's prompts write them ("4/5", "1,234 plays"):
               how many, their mean and spread, the share at or below the split's dislike threshold and at or
               above its like threshold, the mean of the newest 10 (the last ones in the text), and the mean of
               the values stated on lines that name one of the item's attributes, relative to the mean (a line
               '- "Alien (1979) | Horror, Sci-Fi": liked (5/5)' speaks for a Sci-Fi item); all zero when the
               profile states none. Words can name a rating level; these let the reader count it exactly
               (bench/profile_ceiling.py, a baseline: exact figures of the 30 ratings add +0.03 accuracy over the
               item alone in a logistic regression). `?values=0` leaves them out.
  with `?user_mean=1` also the user's mean profile-history rating (the input of LettinGo's released GRPO
  reward), so the profile must carry taste beyond the rating level to add anything
A hidden layer of 64 and three outputs give P(like / neutral / dislike).

Training examples: every train user's targets, each with several texts in the profile slot, so that ignoring
the profile costs accuracy and the reader meets the kinds of text it will judge: no profile, the profile
history written out as rating lines (what `gen --generator history-text` writes), the stats template
(`stats-text`), and the profiles of a profiles artifact of train users (`?profiles=REF`, e.g. the base
generator's). The number of epochs is chosen on one fold of the train users (never a test user); then one
network per fold is fitted without that fold's users (train users are scored by the network that never saw
them) and one on all train users (everyone else). The artifact's report holds the out-of-fold figures per
kind of profile text. `?without=REF` leaves the users of a profiles, scores or pairs artifact out of all of it:
a second judge that never saw the users whose scores chose a run's pairs (paper.sh's SECOND with RECENT=0).
"""

from __future__ import annotations

import math
import re
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from lettingo_cli.console import log
from lettingo_cli.errors import UsageError, require
from lettingo_cli.metrics import metrics
from lettingo_cli.predictors.base import NO_PROFILE
from lettingo_cli.predictors.fitted import VERBS
from lettingo_cli.predictors.fitting import FOLDS, fold
from lettingo_cli.prompts import history_text
from lettingo_cli.sentiments import SENTIMENTS
from lettingo_cli.specs import Kind, Spec
from lettingo_cli.split_data import (
    Target,
    item_ratings,
    load_histories,
    load_recent_and_targets,
    profiles_fit_split,
    train_users,
    value_words,
)
from lettingo_cli.stated import VALUE_FEATURES, StatedValues
from lettingo_cli.store import Artifact, Store, check_name

TOKEN = re.compile(r"\d+(?:[./,]\d+)*|[^\W\d_]+")  # words, and numbers with their "/5" or "," kept whole
# The sizes below were chosen on the train users of MovieLens 100K's --recent 0 split (validation fold 0, never a
# test user): word pairs, 32-wide vectors or a lighter dropout fitted the train folds better and validated no better
# (history-text - no profile +0.03 to +0.05 accuracy, validation loss 0.910-0.915 for all of them).
PROFILE_BUCKETS = 2**15  # hashed word buckets of the profile (collisions are rare at this size)
ITEM_BUCKETS = 2**13  # hashed words of the item's attributes
DIM = 16  # the profile's and the item's learned vectors
HIDDEN = 64
DROPOUT = 0.5  # on the profile vector: no single word may carry the answer
MAX_EPOCHS = 40
PATIENCE = 4  # epochs without a better validation loss before the epoch search stops
BATCH = 256
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
ITEM_PRIOR_RATINGS = 5  # an item's mean rating is shrunk towards the global mean as if it had 5 more such ratings
VALIDATION_FOLD = 0  # the train users' fold that chooses the number of epochs
WEIGHTS_FILE = "reader.pt"
SLOT_KINDS = ("none", "history-text", "stats-text", "profiles")


SPEC = "reader:bow[?profiles=REF][&user_mean=1][&values=0][&without=REF]"


@dataclass(frozen=True)
class ReaderOptions:
    profiles: int | None = None  # a profiles artifact of train users to train on (its id), besides the written texts
    user_mean: bool = False  # also give the user's mean profile-history rating (LettinGo's released reward prompt)
    values: bool = True  # read the values the profile states ("4/5") as numbers
    without: int | None = None  # an artifact (its id) whose users are left out of fitting: a judge that never saw them

    @classmethod
    def of(cls, params: dict) -> ReaderOptions:
        """The options a fitted artifact was made with (artifacts fitted before `values` existed had none)."""
        return cls(params.get("profiles"), params.get("user_mean", False), params.get("values", False),
                   params.get("without"))  # fmt: skip

    def params(self) -> dict:
        """The options as the artifact's params (`without` only when set, so readers fitted before it stay cached)."""
        return {k: v for k, v in asdict(self).items() if k != "without" or v is not None}


def reader_options(spec: Spec, store: Store) -> ReaderOptions:
    """`reader:bow[?profiles=REF][&user_mean=1][&values=0][&without=REF]`, as the registry parsed it."""
    options = spec.options
    flags = (options.get("user_mean", "0"), options.get("values", "1"))
    if (
        spec.target != "bow"
        or set(options) - {"profiles", "user_mean", "values", "without"}
        or any(f not in ("0", "1") for f in flags)
    ):
        raise UsageError(f"bad predictor {spec.text!r}: use {SPEC}")
    profiles = store.resolve(options["profiles"], kind="profiles").id if options.get("profiles") else None
    without = store.resolve(options["without"]).id if options.get("without") else None
    return ReaderOptions(profiles=profiles, user_mean=flags[0] == "1", values=flags[1] == "1", without=without)


def fitted_users(store: Store, split: Artifact, options: ReaderOptions) -> list[str]:
    """The train users the reader is fitted on: the split's train users, less those of `without` (e.g. the scores
    that chose a run's pairs: a second judge that never saw those users' targets nor their profiles' scores)."""
    users = train_users(store, split)
    if options.without is None:
        return users
    source = store.get(options.without)
    if source.kind not in ("profiles", "scores", "pairs"):
        raise UsageError(f"reader:bow?without={source.ref}: name a profiles, scores or pairs artifact")
    left_out = {row["user_id"] for row in store.rows(source, source.kind)}
    if not left_out & set(users):
        raise UsageError(f"reader:bow?without={source.ref}: it holds no train user of {split.ref} to leave out")
    return [u for u in users if u not in left_out]


def _hashed(words: list[str], buckets: int) -> list[int]:
    return [zlib.crc32(word.encode()) % (buckets - 1) + 1 for word in words] or [0]  # 0: the empty text's bucket


def profile_ids(text: str) -> list[int]:
    if text == NO_PROFILE or not text.strip():
        return [0]
    return _hashed(TOKEN.findall(text.lower()), PROFILE_BUCKETS)


def item_attributes(text: str) -> list[str]:
    """The item's attributes (genres, categories: the comma- or bar-separated parts after the title), lowercased."""
    _, _, attributes = text.partition(" | ")
    return [part.strip().lower() for part in re.split(r"[,|]", attributes) if part.strip()]


def item_ids(text: str) -> list[int]:
    """The words of the item text's attributes (after the title: genres, categories), not its title: a title's
    words name one item, and a few thousand targets are too few to learn items by name (it overfits: on the train
    users' validation fold the loss rose from its third epoch with titles, from its tenth without)."""
    _, _, attributes = text.partition(" | ")
    return _hashed(TOKEN.findall(attributes.lower()), ITEM_BUCKETS)


def _network(torch, dense: int):
    class Reader(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.profile = torch.nn.EmbeddingBag(PROFILE_BUCKETS, DIM, mode="mean")
            self.item = torch.nn.EmbeddingBag(ITEM_BUCKETS, DIM, mode="mean")
            self.dropout = torch.nn.Dropout(DROPOUT)
            self.hidden = torch.nn.Linear(3 * DIM + dense, HIDDEN)
            self.out = torch.nn.Linear(HIDDEN, len(SENTIMENTS))

        def forward(self, profile, profile_offsets, item, item_offsets, features):
            user = self.dropout(self.profile(profile, profile_offsets))
            thing = self.item(item, item_offsets)
            joined = torch.cat([user, thing, user * thing, features], dim=1)
            return self.out(torch.relu(self.hidden(joined)))

    return Reader()


class Examples:
    """Encoded (profile, item, features) examples, batched as EmbeddingBag inputs."""

    def __init__(self, torch, rows: list[tuple[list[int], list[int], list[float]]], labels: list[int] | None = None):
        self.torch, self.rows, self.labels = torch, rows, labels

    def batch(self, indices: list[int]):
        torch = self.torch
        chosen = [self.rows[i] for i in indices]

        def bag(lists):
            offsets = torch.tensor([0] + [len(x) for x in lists[:-1]]).cumsum(0)
            return torch.tensor([i for x in lists for i in x]), offsets

        profile, profile_offsets = bag([r[0] for r in chosen])
        item, item_offsets = bag([r[1] for r in chosen])
        features = torch.tensor([r[2] for r in chosen], dtype=torch.float32)
        return profile, profile_offsets, item, item_offsets, features

    def __len__(self) -> int:
        return len(self.rows)


class Featurizer:
    """What the reader knows besides the texts: the item's rating statistics, the values the profile states (unless
    `values` is off) and the user's mean (if asked)."""

    def __init__(self, store: Store, split: Artifact, options: ReaderOptions):
        self.items = item_ratings(store, split)
        self.user_mean = options.user_mean
        self.values = StatedValues(value_words(split), split.params, self.items.global_mean) if options.values else None
        self.history_means: dict[str, float] = {}
        self.store, self.split = store, split

    @property
    def width(self) -> int:
        return 4 + (VALUE_FEATURES if self.values else 0) + (1 if self.user_mean else 0)

    def remember_users(self, users: list[str]) -> None:
        missing = [u for u in users if u not in self.history_means]
        if self.user_mean and missing:
            histories = load_histories(self.store, self.split, missing, self.split.params["history"])
            for user, rows in histories.items():
                ratings = [row["rating"] for row in rows]
                self.history_means[user] = sum(ratings) / len(ratings) if ratings else self.items.global_mean

    def encode(self, user: str, target: Target, profile: str) -> tuple[list[int], list[int], list[float]]:
        ids = profile_ids(profile)
        mean = self.items.mean(target.text, ITEM_PRIOR_RATINGS) - self.items.global_mean
        features = [mean, self.items.popularity(target.text) / 5, float(ids != [0]), math.log1p(len(ids)) / 5]
        if self.values:
            text = "" if profile == NO_PROFILE else profile
            features += self.values.features(text, item_attributes(target.text))
        if self.user_mean:
            features.append(self.history_means.get(user, self.items.global_mean) - self.items.global_mean)
        return ids, item_ids(target.text), features


# --- fitting: the `fit` stage -------------------------------------------------------------------------------


def fit_reader(store: Store, split: Artifact, options: ReaderOptions, force: bool = False) -> Artifact:
    """The `fit` stage: the reader's predictor artifact for this split and options (fitted once; cached)."""
    from lettingo_cli.backends.written import stats_profile

    params = {"predictor": "reader:bow", "split": split.id, **options.params()}
    inputs = {"split": split.id, **({"profiles": options.profiles} if options.profiles else {})}
    inputs |= {"without": options.without} if options.without else {}
    trained_on = f"-{store.get(options.profiles).name}" if options.profiles else ""
    suffix = ("-user-mean" if options.user_mean else "") + ("" if options.values else "-no-values")
    suffix += f"-without-{store.get(options.without).name}" if options.without else ""
    name = check_name(f"{split.name}-reader{trained_on}{suffix}")
    run = store.stage("fit", "predictor", name, params, inputs, force=force, verbs=VERBS)
    if run.cached:
        return run.cached
    torch = require("torch")
    started = time.perf_counter()
    users = fitted_users(store, split, options)
    _, held_out = load_recent_and_targets(store, split, users, split.params["targets"])
    histories = load_histories(store, split, users, split.params["history"])
    words = value_words(split)
    slots: dict[str, list[tuple[str, str]]] = {u: [] for u in users}  # user -> [(slot kind, text)]
    for user in users:
        slots[user] += [("none", NO_PROFILE)]
        if histories[user]:
            slots[user] += [("history-text", history_text(histories[user]))]
            slots[user] += [("stats-text", stats_profile(histories[user], words))]
    if options.profiles:
        source = store.get(options.profiles)
        if not profiles_fit_split(store.get(source.params["split"]), split):
            raise UsageError(f"reader:bow?profiles={source.ref}: its profiles are of a split whose users or history "
                             f"differ from {split.ref}'s")  # fmt: skip
        taken = 0
        for row in store.rows(source, "profiles"):
            if row["user_id"] in slots and row["text"].strip():
                slots[row["user_id"]].append(("profiles", row["text"]))
                taken += 1
        if not taken:  # fitting without them would silently be the plain reader
            raise UsageError(f"reader:bow?profiles={source.ref}: no profiles of the split's train users")
    featurizer = Featurizer(store, split, options)
    featurizer.remember_users(users)
    examples, labels, owners, kinds = [], [], [], []
    for user in users:
        for target in held_out[user]:
            for kind, text in slots[user]:
                examples.append(featurizer.encode(user, target, text))
                labels.append(SENTIMENTS.index(target.sentiment))
                owners.append(user)
                kinds.append(kind)
    if len({fold(u) for u in owners}) < FOLDS:
        raise UsageError(f"reader:bow needs train users with targets in every fold of {split.ref} to fit on")
    data = Examples(torch, examples, labels)
    folds = [fold(u) for u in owners]

    def indices(keep) -> list[int]:
        return [i for i, k in enumerate(folds) if keep(k)]

    epochs, curve = _choose_epochs(torch, data, featurizer.width, indices(lambda k: k != VALIDATION_FOLD),
                                   indices(lambda k: k == VALIDATION_FOLD))  # fmt: skip
    log(f"reader:bow: {len(data)} examples of {len(users)} train users; {epochs} epochs (chosen on fold "
        f"{VALIDATION_FOLD})")  # fmt: skip
    networks, out_of_fold = {}, [None] * len(data)
    for k in range(FOLDS):
        network = _train(torch, data, featurizer.width, indices(lambda f, k=k: f != k), epochs)
        held = indices(lambda f, k=k: f == k)
        for i, distribution in zip(held, _predict(torch, network, data, held)):
            out_of_fold[i] = distribution
        networks[str(k)] = network.state_dict()
    networks["all"] = _train(torch, data, featurizer.width, list(range(len(data))), epochs).state_dict()
    report = {"out_of_fold": _out_of_fold_report(out_of_fold, labels, kinds), "validation_curve": curve}
    stats = {"seconds": round(time.perf_counter() - started, 1)}
    counts = {"train_users": len(users), "examples": len(data), "epochs": epochs}
    with run, TemporaryDirectory() as scratch:
        path = Path(scratch) / WEIGHTS_FILE
        torch.save({key: {n: t.half() for n, t in state.items()} for key, state in networks.items()}, path)
        store.add_file(run.artifact, path, WEIGHTS_FILE)
        return run.finish(counts=counts, report=report, stats=stats)


def _train(torch, data: Examples, dense: int, chosen: list[int], epochs: int, on_epoch=None):
    torch.manual_seed(0)
    network = _network(torch, dense)
    optimizer = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    labels = torch.tensor(data.labels)
    order = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        network.train()
        permutation = [chosen[i] for i in torch.randperm(len(chosen), generator=order).tolist()]
        for start in range(0, len(permutation), BATCH):
            batch = permutation[start : start + BATCH]
            loss = torch.nn.functional.cross_entropy(network(*data.batch(batch)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if on_epoch is not None and on_epoch(epoch + 1, network):
            break
    network.eval()
    return network


def _predict(torch, network, data: Examples, chosen: list[int]) -> list[list[float]]:
    network.eval()
    result = []
    with torch.no_grad():
        for start in range(0, len(chosen), BATCH * 8):
            batch = chosen[start : start + BATCH * 8]
            result += torch.softmax(network(*data.batch(batch)), dim=1).tolist()
    return result


def _choose_epochs(torch, data: Examples, dense: int, fit_on: list[int], validate_on: list[int]):
    """The epoch count with the lowest validation log-loss (training stops PATIENCE epochs after the best)."""
    curve: list[float] = []

    def on_epoch(epoch: int, network) -> bool:
        predicted = _predict(torch, network, data, validate_on)
        loss = -sum(math.log(max(p[data.labels[i]], 1e-9)) for p, i in zip(predicted, validate_on)) / len(predicted)
        curve.append(round(loss, 4))
        return epoch - (curve.index(min(curve)) + 1) >= PATIENCE

    _train(torch, data, dense, fit_on, MAX_EPOCHS, on_epoch)
    return curve.index(min(curve)) + 1, curve


def _out_of_fold_report(predicted: list[list[float]], labels: list[int], kinds: list[str]) -> dict:
    """Accuracy and macro F1 of the out-of-fold answers, per kind of text in the profile slot."""
    report = {}
    for kind in SLOT_KINDS:
        pairs = [(SENTIMENTS[y], SENTIMENTS[max(range(3), key=p.__getitem__)])
                 for p, y, k in zip(predicted, labels, kinds) if k == kind]  # fmt: skip
        if pairs:
            figures = metrics(pairs)
            report[kind] = {"n": figures["n"], "accuracy": round(figures["accuracy"], 4),
                            "macro_f1": round(figures["macro_f1"], 4)}  # fmt: skip
    return report


# --- the frozen predictor -------------------------------------------------------------------------------------


class ReaderPredictor:
    def __init__(self, store: Store, split: Artifact, fitted: Artifact):
        self.torch = torch = require("torch")
        if fitted.params.get("split") != split.id:
            raise UsageError(f"{fitted.ref} was fitted on another split than {split.ref}")
        options = ReaderOptions.of(fitted.params)
        self.featurizer = Featurizer(store, split, options)
        entry = next((f for f in store.files(fitted) if f["path"] == WEIGHTS_FILE), None)
        if entry is None:
            raise UsageError(f"{fitted.ref} has no {WEIGHTS_FILE}")
        weights = torch.load(store.blob_path(entry["blob_hash"]), weights_only=True)
        self.networks = {}
        for key, state in weights.items():
            network = _network(torch, self.featurizer.width)
            network.load_state_dict({n: t.float() for n, t in state.items()})
            network.eval()
            self.networks[key] = network
        self.train_users = set(fitted_users(store, split, options))  # each scored by the network that never saw it
        self.name = f"reader:bow@{fitted.name}@v{fitted.version}"
        self.details = {"predictor_artifact": fitted.id, **asdict(options), "epochs": fitted.counts.get("epochs")}

    def predict(self, user: str, recent: list[dict], targets: list[Target], profile_texts: list[str]):
        torch = self.torch
        self.featurizer.remember_users([user])
        network = self.networks[str(fold(user)) if user in self.train_users else "all"]
        rows = [self.featurizer.encode(user, target, text) for target in targets for text in profile_texts]
        data = Examples(torch, rows)
        with torch.no_grad():
            probabilities = torch.softmax(network(*data.batch(list(range(len(rows))))), dim=1).tolist()
        answers = [dict(zip(SENTIMENTS, row)) for row in probabilities]
        n = len(profile_texts)
        return [answers[i * n : (i + 1) * n] for i in range(len(targets))]

    def close(self) -> None:
        self.networks = {}


def fit(spec, store: Store, split: Artifact, force: bool = False) -> Artifact:
    """The `fit` stage for reader:bow[?...]: its predictor artifact for this split and spec (fitted once)."""
    return fit_reader(store, split, reader_options(spec, store), force=force)


def load_reader(spec, store: Store, split: Artifact, calibrate: bool = False) -> ReaderPredictor:
    """reader:bow[?...]: the fitted artifact for this split and spec (fitted once)."""
    return ReaderPredictor(store, split, fit(spec, store, split))


KINDS = (Kind("reader", SPEC, load_reader, fit=fit, from_artifact=ReaderPredictor),)
