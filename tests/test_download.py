"""`ingest movielens --download`: a real HTTP server on 127.0.0.1 serves zips the tests build; good ones are
checked and cached, a truncated download, a page that is not a zip and a wrong checksum are refused with
nothing kept, and an address nobody answers says what to download and where to put it."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from lettingo_cli.download import RELEASES, Release, fetch
from lettingo_cli.errors import IntegrityError, LettingoError
from lettingo_cli.store import Store
from tests.conftest import SHARED_DATA, free_port, write_ml100k


class Served:
    """What the server answers per path: (body, the Content-Length it claims)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.hits: list[str] = []


@pytest.fixture
def server():
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            served.hits.append(self.path)
            if self.path not in served.routes:
                self.send_error(404)
                return
            body, length = served.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)  # a claimed length above len(body) is a connection cut short

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def zipped(folder: Path, member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.iterdir()):
            bundle.write(path, f"{member}/{path.name}")
    return buffer.getvalue()


def tiny_release(folder: Path, url: str) -> Release:
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return Release("ml-tiny", url, "ml-tiny", "movielens-tiny", files)


def test_a_checked_release_is_fetched_once_and_cached(server, tmp_path):
    served, base = server
    folder = write_ml100k(tmp_path / "ml-tiny")
    served.routes["/ml-tiny.zip"] = (body := zipped(folder, "ml-tiny"), len(body))
    release = tiny_release(folder, f"{base}/ml-tiny.zip")
    cache = tmp_path / "cache"

    target = fetch(release, cache=cache)
    assert target == cache / "movielens-tiny"
    assert sorted(p.name for p in target.iterdir()) == sorted(release.files)
    assert (target / "u.data").read_bytes() == (folder / "u.data").read_bytes()
    assert [p.name for p in cache.iterdir()] == ["movielens-tiny"]  # no zip or work folder left behind

    assert fetch(release, cache=cache) == target and served.hits == ["/ml-tiny.zip"]  # the second time: no download
    (target / "u.item").write_bytes(b"edited")  # a damaged cache is fetched again, whole
    assert fetch(release, cache=cache) == target and len(served.hits) == 2
    assert (target / "u.item").read_bytes() == (folder / "u.item").read_bytes()


def test_truncated_not_a_zip_and_wrong_checksum_are_refused_with_nothing_kept(server, tmp_path):
    served, base = server
    folder = write_ml100k(tmp_path / "ml-tiny")
    body = zipped(folder, "ml-tiny")
    served.routes["/short.zip"] = (body[: len(body) // 2], len(body))
    served.routes["/page.zip"] = (b"<html>proxy login</html>", 24)
    release = tiny_release(folder, f"{base}/short.zip")
    cache = tmp_path / "cache"

    with pytest.raises(LettingoError, match="cut short|broke off"):
        fetch(release, cache=cache)
    with pytest.raises(LettingoError, match="not a zip archive"):
        fetch(release, f"{base}/page.zip", cache=cache)
    (folder / "u.data").write_text("1\t1\t5\t881250949\n")  # the served zip no longer matches the release
    served.routes["/changed.zip"] = (changed := zipped(folder, "ml-tiny"), len(changed))
    with pytest.raises(IntegrityError, match="u.data has sha256"):
        fetch(release, f"{base}/changed.zip", cache=cache)
    assert list(cache.iterdir()) == []


def test_the_cli_refuses_a_wrong_release_and_explains_offline(server, lettingo, store_path, tmp_path, monkeypatch):
    served, base = server
    monkeypatch.setenv("LETTINGO_CACHE", str(tmp_path / "cache"))
    folder = write_ml100k(tmp_path / "ml-100k")  # the right layout, not GroupLens's bytes
    for name in ("README", "u.info", "u.occupation"):
        (folder / name).write_text("not GroupLens's\n")
    served.routes["/ml-100k.zip"] = (body := zipped(folder, "ml-100k"), len(body))

    wrong = lettingo("ingest", "movielens", "--download", "ml-100k", "--url", f"{base}/ml-100k.zip")
    assert wrong.exit_code == 4 and wrong.stdout == ""
    error = wrong.stderr.splitlines()[-1]  # after the line that says what is being downloaded
    assert error.startswith("lettingo: error:") and "has sha256" in error and "refused" in error
    assert not (tmp_path / "cache" / "data" / "movielens-100k").exists()
    assert not Store(store_path).list(kind="dataset")

    offline = lettingo("ingest", "movielens", "--download", "ml-100k", "--url", f"http://127.0.0.1:{free_port()}/x")
    assert offline.exit_code == 1 and offline.stderr.count("\n") == 1
    assert (
        offline.stderr.startswith("lettingo: error: could not download") and RELEASES["ml-100k"].url in offline.stderr
    )
    assert str(tmp_path / "cache" / "data" / "movielens-100k") in offline.stderr

    assert lettingo("ingest", "movielens", "--download", "ml-1m").exit_code == 2  # unknown release
    assert lettingo("ingest", "movielens").exit_code == 2  # neither a folder nor --download
    assert lettingo("ingest", "movielens", folder, "--download", "ml-100k").exit_code == 2


@pytest.mark.integration
def test_the_real_release_through_the_cli(server, lettingo, store_path, tmp_path, monkeypatch):
    source = SHARED_DATA / "movielens-100k"
    if not source.is_dir():
        pytest.skip("../shared/data/movielens-100k is not here")
    served, base = server
    monkeypatch.setenv("LETTINGO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "ml-100k").mkdir()
    for name in RELEASES["ml-100k"].files:  # GroupLens's zip holds these (and more) in ml-100k/
        (tmp_path / "ml-100k" / name).write_bytes((source / name).read_bytes())
    served.routes["/ml-100k.zip"] = (body := zipped(tmp_path / "ml-100k", "ml-100k"), len(body))

    result = lettingo("ingest", "movielens", "--download", "ml-100k", "--url", f"{base}/ml-100k.zip")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "dataset:movielens-100k@v1\n"  # the name the README's later commands use
    dataset = Store(store_path).resolve("dataset:movielens-100k")
    assert dataset.counts["users"] == 943 and dataset.counts["interactions"] == 100_000
