"""The artifact store on a real SQLite file: versions, content hashes, references, blobs, verify, gc, schema."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from lettingo_cli.errors import ArtifactNotFound, LettingoError
from lettingo_cli.store import Store, Verbs
from lettingo_cli.store.digest import canonical_json
from lettingo_cli.store.store import _migrations


def add_profiles(store: Store, name: str, texts: list[str], pending: bool = False):
    artifact = store.begin("profiles", name, {"n": len(texts)}, run_id=None)
    store.insert_rows(
        artifact,
        "profiles",
        (
            {"user_id": "u1", "generator": "g", "sample_index": i, "seed": i, "prompt_hash": "p", "text": text}
            for i, text in enumerate(texts)
        ),
    )
    return artifact if pending else store.finalize(artifact)


def test_store_files_and_pragmas(store_path):
    store = Store(store_path)
    assert store_path.exists()
    assert store.blob_dir == store_path.with_name("lettingo.blobs")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert store.schema_version == len(_migrations()[1])


def test_versions_increase_and_identical_content_returns_existing(store_path):
    store = Store(store_path)
    first = add_profiles(store, "p", ["a", "b"])
    second = add_profiles(store, "p", ["a", "c"])
    again = add_profiles(store, "p", ["a", "b"])
    assert (first.version, second.version) == (1, 2)
    assert again.id == first.id and again.ref == "profiles:p@v1"
    # the duplicate's rows were dropped with it
    assert store.db.execute("SELECT COUNT(*) FROM profiles").fetchone()[0] == 4
    assert first.counts == {"profiles": 2, "rows": 2}


def test_content_hash_is_sha256_of_canonical_rows(store_path):
    store = Store(store_path)
    artifact = add_profiles(store, "p", ["hello"])
    row = {
        "user_id": "u1",
        "generator": "g",
        "sample_index": 0,
        "seed": 0,
        "prompt_hash": "p",
        "text": "hello",
        "n_tokens": None,
        "flags": "[]",
    }
    expected = hashlib.sha256(("table profiles\n" + canonical_json(row) + "\n").encode()).hexdigest()
    assert artifact.content_hash == expected


def test_resolve_references(store_path):
    store = Store(store_path)
    v1 = add_profiles(store, "p", ["a"])
    v2 = add_profiles(store, "p", ["b"])
    assert store.resolve(str(v1.id)).id == v1.id
    assert store.resolve("p@v1").id == v1.id
    assert store.resolve("p:latest").id == v2.id
    assert store.resolve("p").id == v2.id
    assert store.resolve("profiles:p@v2").id == v2.id
    assert store.resolve("p@v1", kind="profiles").id == v1.id
    with pytest.raises(ArtifactNotFound, match="no artifact 'p@v9'"):
        store.resolve("p@v9")
    with pytest.raises(ArtifactNotFound, match="a split is needed"):
        store.resolve("profiles:p", kind="split")
    with pytest.raises(ArtifactNotFound, match="not a kind"):
        store.resolve("nonsense:p")


def test_same_name_in_two_kinds_is_ambiguous_until_the_kind_is_known(store_path):
    store = Store(store_path)
    add_profiles(store, "same", ["a"])
    pairs = store.begin("pairs", "same", {}, None)
    store.insert_rows(
        pairs, "pairs", [{"user_id": "u", "pair_index": 0, "prompt": "p", "chosen": "c", "rejected": "r"}]
    )
    pairs = store.finalize(pairs)
    with pytest.raises(ArtifactNotFound, match="ambiguous"):
        store.resolve("same@v1")
    assert store.resolve("same@v1", kind="pairs").id == pairs.id


def test_pending_artifacts_are_invisible_and_get_no_version(store_path):
    store = Store(store_path)
    pending = add_profiles(store, "p", ["a"], pending=True)
    assert pending.version is None
    assert store.list() == []
    with pytest.raises(ArtifactNotFound):
        store.resolve("p")
    with pytest.raises(ArtifactNotFound, match="still being written"):
        store.resolve(str(pending.id))
    done = store.finalize(pending)
    assert done.version == 1 and store.resolve("p").id == pending.id


def test_complete_artifacts_are_immutable(store_path):
    store = Store(store_path)
    artifact = add_profiles(store, "p", ["a"])
    with pytest.raises(ValueError, match="immutable"):
        store.insert_rows(artifact, "profiles", [])


def _profile_rows(texts: list[str]) -> list[dict]:
    return [
        {"user_id": "u1", "generator": "g", "sample_index": i, "seed": i, "prompt_hash": "p", "text": text}
        for i, text in enumerate(texts)
    ]


def test_stage_protocol_resumable_run_keeps_its_rows_and_resumes(store_path, capsys):
    store = Store(store_path)
    parent = add_profiles(store, "parent", ["x"])
    begin = dict(stage="gen", kind="profiles", name="p", params={"n": 2}, inputs={"split": parent.id}, resumable=True,
                 verbs=Verbs("generate", "generated"))  # fmt: skip
    run = store.stage(**begin)
    assert run.cached is None
    with pytest.raises(KeyboardInterrupt), run:
        store.insert_rows(run.artifact, "profiles", _profile_rows(["first"]))
        raise KeyboardInterrupt
    first_id = run.artifact.id
    assert store.list(kind="profiles", name="p") == [] and store.pending(run.key).id == first_id

    again = store.stage(**begin)
    with again:
        assert again.resumed and again.artifact.id == first_id
        assert store.distinct(again.artifact, "profiles", ("text",)) == {("first",)}  # the finished rows stayed
        store.insert_rows(again.artifact, "profiles", _profile_rows(["first", "second"])[1:])
        done = again.finish(counts={"users": 1})
    assert done.ref == "profiles:p@v1" and done.counts == {"profiles": 2, "rows": 2, "users": 1}
    assert "resuming an interrupted gen run of p" in capsys.readouterr().err

    cached = store.stage(**begin)
    assert cached.cached.id == done.id
    assert capsys.readouterr().err == "already generated as profiles:p@v1 (use --force to generate again)\n"
    assert store.stage(**begin, force=True).cached is None


def test_stage_protocol_atomic_run_lands_whole_or_not_at_all(store_path):
    store = Store(store_path)
    begin = dict(stage="pair", kind="pairs", name="q", params={}, inputs={}, atomic=True)
    row = {"user_id": "u", "pair_index": 0, "prompt": "p", "chosen": "c", "rejected": "r"}
    run = store.stage(**begin)
    with pytest.raises(ValueError, match="boom"), run:
        store.insert_rows(run.artifact, "pairs", [row])
        raise ValueError("boom")
    runs = store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    leftovers = store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0]
    assert (runs, leftovers) == (0, 0)  # not even the run record
    run = store.stage(**begin)
    with run:
        store.insert_rows(run.artifact, "pairs", [row])
        done = run.finish()
    assert done.ref == "pairs:q@v1" and store.cached(run.key).id == done.id


def test_stage_protocol_plain_run_discards_its_artifact_on_failure(store_path, tmp_path):
    store = Store(store_path)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    run = store.stage("export", "export", "e", {}, {})
    with pytest.raises(RuntimeError, match="verification"), run:
        store.add_file(run.artifact, model)
        raise RuntimeError("verification failed")
    assert store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 0
    assert store.pending(run.key) is None
    with pytest.raises(RuntimeError, match="without finish"), store.stage("export", "export", "e", {}, {}):
        pass  # a stage that forgets to seal its artifact is a bug, not a silent success


def test_run_cache_and_lineage(store_path):
    store = Store(store_path)
    key = store.run_key("gen", {"split": 7}, {"n": 2})
    assert key == store.run_key("gen", {"split": [7]}, {"n": 2})
    assert key != store.run_key("gen", {"split": 7}, {"n": 3})
    assert store.cached(key) is None
    parent = add_profiles(store, "parent", ["x"])
    run_id = store.start_run("score", key, {"n": 2}, {"profiles": parent.id})
    child = store.begin("scores", "child", {}, run_id)
    store.insert_rows(
        child,
        "scores",
        [
            {
                "user_id": "u1",
                "generator": "g",
                "sample_index": 0,
                "target_position": 0,
                "predicted": "like",
                "truth": "like",
                "correct": 1,
                "p_true": 0.7,
            },
        ],
    )
    assert store.pending(key).id == child.id
    child = store.finalize(child)
    assert store.cached(key).id == child.id
    chain = store.lineage(child)
    assert [(node["depth"], node["role"], node["artifact"].id) for node in chain] == [
        (0, None, child.id),
        (1, "profiles", parent.id),
    ]
    assert chain[0]["run"]["stage"] == "score"


def test_single_file_and_directory_blobs(store_path, tmp_path):
    store = Store(store_path)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    export = store.begin("export", "m", {}, None)
    store.add_file(export, model)
    export = store.finalize(export)
    assert export.content_hash == hashlib.sha256(model.read_bytes()).hexdigest()
    assert store.blob_path(export.content_hash).read_bytes() == model.read_bytes()
    assert not list((store.blob_dir / "tmp").iterdir())

    adapter_dir = tmp_path / "adapter"
    (adapter_dir / "sub").mkdir(parents=True)
    (adapter_dir / "adapter_config.json").write_text("{}")
    (adapter_dir / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    adapter = store.begin("adapter", "a", {}, None)
    store.add_dir(adapter, adapter_dir)
    adapter = store.finalize(adapter)
    manifest = "".join(
        f"{path}\t{hashlib.sha256((adapter_dir / path).read_bytes()).hexdigest()}\n"
        for path in ("adapter_config.json", "sub/weights.bin")
    )
    assert adapter.content_hash == hashlib.sha256(manifest.encode()).hexdigest()
    out = store.materialize(adapter, tmp_path / "out")
    assert (out / "sub" / "weights.bin").read_bytes() == b"\x00\x01"


def test_verify_detects_changed_rows_and_corrupt_blobs(store_path, tmp_path):
    store = Store(store_path)
    add_profiles(store, "p", ["a", "b"])
    file = tmp_path / "f.bin"
    file.write_bytes(b"original")
    export = store.begin("export", "e", {}, None)
    store.add_file(export, file)
    export = store.finalize(export)
    assert store.verify()["ok"]

    store.db.execute("UPDATE profiles SET text = 'tampered' WHERE sample_index = 1")
    store.db.conn.commit()
    report = store.verify()
    assert not report["ok"] and "profiles:p@v1" in report["problems"][0]

    store.db.execute("UPDATE profiles SET text = 'b' WHERE sample_index = 1")
    store.db.conn.commit()
    assert store.verify()["ok"]
    store.blob_path(export.content_hash).write_bytes(b"corrupted")
    report = store.verify()
    assert not report["ok"] and any("corrupt" in problem for problem in report["problems"])


def test_gc_removes_only_unreferenced_blobs(store_path, tmp_path):
    store = Store(store_path)
    keep, drop = tmp_path / "keep.bin", tmp_path / "drop.bin"
    keep.write_bytes(b"keep")
    drop.write_bytes(b"drop")
    kept = store.begin("export", "kept", {}, None)
    store.add_file(kept, keep)
    kept = store.finalize(kept)
    abandoned = store.begin("export", "abandoned", {}, None)
    drop_hash = store.add_file(abandoned, drop)
    store.discard(abandoned)
    (store.blob_dir / "tmp" / "leftover").write_bytes(b"half a write")

    dry = store.gc(dry_run=True)
    assert len(dry["removed"]) == 2 and store.blob_path(drop_hash).exists()
    result = store.gc()
    assert not store.blob_path(drop_hash).exists()
    assert not (store.blob_dir / "tmp" / "leftover").exists()
    assert store.blob_path(kept.content_hash).exists()
    assert result["bytes"] == len(b"drop") + len(b"half a write")
    assert store.verify()["ok"]


def test_newer_store_is_refused(store_path):
    Store(store_path).close()
    conn = sqlite3.connect(store_path)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(LettingoError, match="newer lettingo"):
        Store(store_path)


def test_older_store_is_migrated(store_path):
    import sqlite_utils

    migrations, names = _migrations()
    db = sqlite_utils.Database(store_path)
    migrations.apply(db, stop_before=names[-1])  # the store as the previous schema left it
    db.close()
    store = Store(store_path)
    assert store.schema_version == len(names)
    assert {m.name for m in migrations.applied(store.db)} == set(names)
    assert "profiles" in store.db.table_names()


def test_missing_store_is_not_created_by_readers(store_path):
    with pytest.raises(ArtifactNotFound, match="no lettingo store"):
        Store(store_path, create=False)
    assert not store_path.exists()


def test_the_per_trainer_step_logs_move_into_one_training_log(store_path):
    """Schema 5: the rows of dpo_steps and grpo_steps (schemas 2 and 4) land in training_steps, each trainer's
    figures under its own names, and the old tables go."""
    import sqlite_utils

    migrations, names = _migrations()
    db = sqlite_utils.Database(store_path)
    migrations.apply(db, stop_before="0005_training_steps")
    for run_id, stage in ((1, "dpo"), (2, "grpo")):
        db.execute("INSERT INTO runs (id, stage, run_key, status, started_at) VALUES (?, ?, ?, 'complete', 'now')",
                   [run_id, stage, f"k{run_id}"])  # fmt: skip
    db.execute("INSERT INTO dpo_steps VALUES (1, 1, 0.5, 0.69, 0.1, -0.1, 0.2, 1.0, '{\"loss\": 0.69}')")
    db.execute("INSERT INTO dpo_steps VALUES (1, 2, 1.0, 0.52, 0.3, -0.2, 0.5, 1.0, '{}')")
    db.execute("INSERT INTO grpo_steps VALUES (2, 1, 0.25, 0.01, 0.42, 0.07, NULL, 31.5, '{}')")
    db.conn.commit()
    db.close()
    store = Store(store_path)
    assert store.schema_version == len(names)
    assert not {"dpo_steps", "grpo_steps"} & set(store.db.table_names())
    dpo = store.training_steps(1)
    assert [s["step"] for s in dpo] == [1, 2] and [s["loss"] for s in dpo] == [0.69, 0.52]
    assert dpo[1]["rewards_margins"] == 0.5 and dpo[0]["rewards_chosen"] == 0.1 and dpo[0]["logged"] == '{"loss": 0.69}'
    (grpo,) = store.training_steps(2)
    assert (grpo["epoch"], grpo["reward"], grpo["reward_std"], grpo["kl"], grpo["completion_length"]) == (
        0.25, 0.42, 0.07, None, 31.5
    )  # fmt: skip
    store.record_training_step(2, 2, 0.5, 0.02, {"reward": 0.61}, {"reward": 0.61})
    assert [s.get("reward") for s in store.training_steps(2)] == [0.42, 0.61]
