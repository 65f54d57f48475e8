"""Public data sets fetched on request: `lettingo ingest movielens --download ml-100k`.

MovieLens may not be redistributed, so lettingo never ships it; like Surprise's `load_builtin('ml-100k')` it fetches
GroupLens's public zip once, checks every file it keeps against the release's sha256 (the same figures as
../shared/data/*/PROVENANCE.md), and keeps the unpacked folder in $LETTINGO_CACHE/data/ (default
~/.cache/lettingo/data/). A truncated download, a file that is not a zip, or a wrong checksum is refused and
leaves nothing in the cache; offline, one line says what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import IntegrityError, LettingoError, UsageError
from lettingo_cli.store.digest import sha256_file

CHUNK_BYTES = 1 << 16
TIMEOUT_S = 60


@dataclass(frozen=True)
class Release:
    name: str  # GroupLens's name, what --download takes
    url: str
    member: str  # the folder inside the zip
    folder: str  # the cache folder, and so the dataset's default name
    files: dict[str, str]  # the files kept (ingest's inputs, the README with the terms, companions) -> sha256


GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
RELEASES = {
    "ml-100k": Release(
        "ml-100k",
        GROUPLENS + "ml-100k.zip",
        "ml-100k",
        "movielens-100k",
        {
            "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        },
    ),
    "ml-latest-small": Release(
        "ml-latest-small",
        GROUPLENS + "ml-latest-small.zip",
        "ml-latest-small",
        "movielens-latest-small",
        {
            "README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
            "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
        },
    ),
}


def release(name: str) -> Release:
    if name not in RELEASES:
        raise UsageError(f"--download {name!r}: unknown release (known: {', '.join(RELEASES)})")
    return RELEASES[name]


def data_cache() -> Path:
    from lettingo_cli.models import cache_root

    return cache_root() / "data"


def fetch(chosen: Release, url: str | None = None, cache: Path | None = None) -> Path:
    """The release's unpacked, checked folder in the cache, downloaded from `url` (default: GroupLens) when the
    cache does not hold it whole."""
    cache = cache or data_cache()
    target = cache / chosen.folder
    if target.is_dir() and not _mismatches(chosen, target):
        log(f"using {target} (checked)")
        return target
    url = url or chosen.url
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{chosen.folder}-") as work:
        archive = Path(work) / "download.zip"
        _download(url, archive, chosen, target)
        unpacked = _unpack(archive, chosen, Path(work) / chosen.folder, url)
        if target.exists():  # a folder that failed its check: replaced by the checked one
            shutil.rmtree(target)
        unpacked.replace(target)
    log(f"{chosen.name}: {len(chosen.files)} files checked into {target}")
    return target


def _mismatches(chosen: Release, folder: Path) -> list[str]:
    return [
        name
        for name, expected in chosen.files.items()
        if not (folder / name).is_file() or sha256_file(folder / name) != expected
    ]


def _download(url: str, destination: Path, chosen: Release, target: Path) -> None:
    advice = (
        f"download {chosen.url} on a machine with internet, unpack it and put its {chosen.member}/ folder's "
        f"files in {target}/ (lettingo checks them), or ingest any folder: lettingo ingest movielens FOLDER"
    )
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        raise LettingoError(f"could not download {url}: HTTP {error.code} {error.reason}; {advice}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise LettingoError(f"could not download {url} ({reason}); {advice}") from None
    expected = response.headers.get("Content-Length")
    received = 0
    log(f"downloading {url}" + (f" ({int(expected) / 1e6:.1f} MB)" if expected else ""))
    try:
        with response, destination.open("wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
    except (http.client.IncompleteRead, OSError) as error:
        raise LettingoError(f"the download of {url} broke off after {received:,} bytes ({error}); run again") from None
    if expected is not None and received != int(expected):
        raise LettingoError(f"the download of {url} was cut short ({received:,} of {int(expected):,} bytes); run again")


def _unpack(archive: Path, chosen: Release, destination: Path, url: str) -> Path:
    """The release's files from the zip, each checked against its sha256 before the folder is kept."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise LettingoError(
            f"{url} is not a zip archive (a truncated download, or a proxy's page); run again"
        ) from None
    destination.mkdir()
    with bundle:
        names = set(bundle.namelist())
        for name, expected in chosen.files.items():
            member = f"{chosen.member}/{name}"
            if member not in names:
                raise IntegrityError(f"{url} has no {member}: not the {chosen.name} release")
            digest = hashlib.sha256()
            try:
                with bundle.open(member) as source, (destination / name).open("wb") as out:
                    while chunk := source.read(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, OSError) as error:
                raise LettingoError(f"{url}: {member} cannot be read ({error}); run again") from None
            if digest.hexdigest() != expected:
                raise IntegrityError(
                    f"{url}: {member} has sha256 {digest.hexdigest()[:16]}..., the {chosen.name} release's is "
                    f"{expected[:16]}...; refused (nothing kept)"
                )
    return destination
