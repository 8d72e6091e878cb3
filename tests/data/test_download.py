"""Downloads against a local HTTP server on 127.0.0.1: resume, checksums, safe extraction, CLI."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from sgdscope.data import download as dl
from sgdscope.data import load_dataset
from sgdscope.data._files import UnsafeFileError
from sgdscope.data.download import (
    ChecksumError,
    DownloadError,
    Remote,
    Source,
    download_dataset,
    download_file,
    safe_extract,
)

from .formats import tar_gz_bytes, write_cifar10

PAYLOAD = bytes(range(256)) * 400  # 100 kB
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_renames(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    out = download_file(
        file_server.url("a.bin"), tmp_path / "a.bin", md5=MD5, sha256=SHA, progress=False
    )
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "a.bin.part").exists()
    # Present and valid: no second request.
    download_file(file_server.url("a.bin"), tmp_path / "a.bin", md5=MD5, progress=False)
    assert len(file_server.requests) == 1


def test_interrupted_transfer_resumes_with_range(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    file_server.cut["a.bin"] = 30_000
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match=r"resumes from a\.bin\.part"):
        download_file(file_server.url("a.bin"), dest, md5=MD5, retries=0, progress=False)
    part = tmp_path / "a.bin.part"
    assert part.stat().st_size == 30_000 and not dest.exists()
    download_file(file_server.url("a.bin"), dest, md5=MD5, retries=0, progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert file_server.requests[-1] == ("a.bin", "bytes=30000-")


def test_retry_resumes_within_one_call(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    file_server.cut["a.bin"] = 12_345
    download_file(
        file_server.url("a.bin"), tmp_path / "a.bin", md5=MD5, retries=2, backoff=0, progress=False
    )
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert [r for _, r in file_server.requests] == [None, "bytes=12345-"]


def test_server_ignoring_range_restarts_cleanly(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    file_server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:5000])
    download_file(file_server.url("a.bin"), tmp_path / "a.bin", md5=MD5, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_is_refused_and_nothing_kept(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD[:-1] + b"X"
    with pytest.raises(ChecksumError, match=f"expected the published {MD5}"):
        download_file(file_server.url("a.bin"), tmp_path / "a.bin", md5=MD5, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_falls_back_to_next_mirror_and_404_is_not_retried(file_server, tmp_path):
    file_server.files["b/a.bin"] = PAYLOAD
    urls = [file_server.url("missing/a.bin"), file_server.url("b/a.bin")]
    download_file(urls, tmp_path / "a.bin", md5=MD5, retries=3, backoff=0, progress=False)
    assert [p for p, _ in file_server.requests] == ["missing/a.bin", "b/a.bin"]
    with pytest.raises(DownloadError, match="404"):
        download_file(urls[0], tmp_path / "c.bin", md5=MD5, retries=3, progress=False)


def _tar_with(member: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


@pytest.mark.parametrize(
    "member, message",
    [
        (tarfile.TarInfo("../evil.txt"), "escapes the folder"),
        (tarfile.TarInfo("/tmp/evil.txt"), "absolute path"),
        (tarfile.TarInfo("ok/../../evil.txt"), "escapes the folder"),
    ],
)
def test_tar_member_escaping_the_folder_is_refused(tmp_path, member, message):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar_with(member))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeFileError, match=message):
        safe_extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and list(dest.iterdir()) == []


def test_tar_links_escaping_the_folder_are_refused(tmp_path):
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = kind, "../../etc/passwd"
        archive = tmp_path / "l.tar"
        archive.write_bytes(_tar_with(link))
        with pytest.raises(UnsafeFileError, match="points outside"):
            safe_extract(archive, tmp_path / "out")


def test_zip_escape_is_refused_and_good_archives_extract(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeFileError, match="escapes"):
        safe_extract(tmp_path / "a.zip", tmp_path / "out")
    (tmp_path / "ok.tar.gz").write_bytes(tar_gz_bytes({"top/a.txt": b"a", "top/b/c.txt": b"c"}))
    created = safe_extract(tmp_path / "ok.tar.gz", tmp_path / "out")
    assert created == [tmp_path / "out" / "top"]
    assert (tmp_path / "out" / "top" / "b" / "c.txt").read_bytes() == b"c"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["top"]  # no temp folder left


def _serve_cifar(file_server, tmp_path, monkeypatch) -> None:
    write_cifar10(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    blob = buf.getvalue()
    file_server.files["cifar-10-python.tar.gz"] = blob
    real = dl.SOURCES["cifar10"].files[0]
    remote = Remote(
        real.filename,
        (file_server.url(real.filename),),
        md5=hashlib.md5(blob).hexdigest(),
        extract=True,
        marker=real.marker,
    )
    source = Source("cifar10", "cifar10", (remote,), homepage="test")
    monkeypatch.setitem(dl.SOURCES, "cifar10", source)


def test_download_dataset_then_load(file_server, tmp_path, monkeypatch):
    _serve_cifar(file_server, tmp_path, monkeypatch)
    root = tmp_path / "root"
    b = load_dataset("cifar10", root=root, download=True, val_fraction=0.0)
    assert len(b.train) == 20
    assert (root / "cifar10" / "cifar-10-batches-py" / "test_batch").exists()
    assert not (root / "cifar10" / "cifar-10-python.tar.gz").exists()  # archive removed
    n = len(file_server.requests)
    download_dataset("cifar10", root, progress=False)  # already there: nothing fetched
    assert len(file_server.requests) == n


def test_cli_download_and_list(file_server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sgdscope.cli.data_cmd import app, dataset_rows

    _serve_cifar(file_server, tmp_path, monkeypatch)
    root = tmp_path / "root"
    runner = CliRunner()
    result = runner.invoke(app, ["download", "cifar10", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "cifar10: ready in" in result.output
    rows = {r["name"]: r for r in dataset_rows(root)}
    assert rows["cifar10"]["present"] and int(rows["cifar10"]["size"]) > 0
    assert not rows["mnist"]["present"] and rows["mnist"]["where"] == str(root / "mnist")
    assert rows["digits"]["kind"] == "embedded"
    listing = runner.invoke(app, ["list", "--root", str(root)])
    assert listing.exit_code == 0 and "cifar10" in listing.output
    bad = runner.invoke(app, ["download", "cifar1", "--root", str(root)])
    assert bad.exit_code != 0 and "did you mean 'cifar10'" in str(bad.exception)


def test_every_source_has_https_urls_and_checksums():
    for name, src in dl.SOURCES.items():
        for r in src.files:
            assert r.md5 or r.sha256, name
            assert all(u.startswith("https://") for u in r.urls), name
    assert dl.SOURCES["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert dl.SOURCES["cifar100"].files[0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert dl.SOURCES["tinyimagenet"].files[0].md5 == "90528d7ca1a48142e341f4ef8d21d0de"
