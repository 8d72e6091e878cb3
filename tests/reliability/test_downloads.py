"""Downloads refuse, before the first byte, a file without a checksum and a non-HTTPS URL;
SHA-256 is checked where known; a ``batches.meta`` holding a pickled object is refused."""

from __future__ import annotations

import hashlib
import os
import pickle
import re

import pytest

from sgdscope.data import download as dl
from sgdscope.data import load_dataset
from sgdscope.data._files import UnsafeFileError
from sgdscope.data.download import (
    ChecksumError,
    Remote,
    Source,
    download_dataset,
    download_file,
)
from sgdscope.errors import ConfigError

from ..data.formats import write_cifar10

PAYLOAD = b"sgdscope" * 1000
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_no_checksum_is_refused_before_any_request(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    with pytest.raises(ConfigError, match="no checksum given"):
        download_file(file_server.url("a.bin"), tmp_path / "a.bin", progress=False)
    assert file_server.requests == []
    assert list(tmp_path.iterdir()) == []  # no .part, no folder content


@pytest.mark.parametrize(
    "url",
    ["http://example.com/a.bin", "ftp://example.com/a.bin", "file:///etc/passwd", "https:///x"],
)
def test_only_https_is_accepted(tmp_path, url):
    with pytest.raises(ConfigError, match="only https:// URLs"):
        download_file(url, tmp_path / "a.bin", sha256=SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_mirror_anywhere_in_the_list_is_refused_first(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    with pytest.raises(ConfigError, match="only https"):
        download_file(
            [file_server.url("a.bin"), "http://mirror.example/a.bin"],
            tmp_path / "a.bin",
            md5=MD5,
            progress=False,
        )
    assert file_server.requests == []


def test_sha256_is_checked_even_when_the_md5_matches(file_server, tmp_path):
    file_server.files["a.bin"] = PAYLOAD
    with pytest.raises(ChecksumError, match="sha256"):
        download_file(
            file_server.url("a.bin"), tmp_path / "a.bin", md5=MD5, sha256="0" * 64, progress=False
        )
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_dataset_with_an_unverifiable_file_fetches_nothing(file_server, tmp_path, monkeypatch):
    file_server.files["a.bin"] = PAYLOAD
    file_server.files["b.bin"] = PAYLOAD
    source = Source(
        "toy",
        "toy",
        (
            Remote("a.bin", (file_server.url("a.bin"),), md5=MD5),
            Remote("b.bin", (file_server.url("b.bin"),)),  # no checksum
        ),
        homepage="test",
    )
    monkeypatch.setitem(dl.SOURCES, "toy", source)
    with pytest.raises(ConfigError, match=r"b\.bin: no checksum"):
        download_dataset("toy", tmp_path, progress=False)
    assert file_server.requests == []
    assert not (tmp_path / "toy").exists()


def test_every_source_is_https_and_checksummed_with_sha256_where_known():
    for name, src in dl.SOURCES.items():
        for r in src.files:
            assert r.md5 or r.sha256, name
            assert all(u.startswith("https://") for u in r.urls), name
            if name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
                assert re.fullmatch(r"[0-9a-f]{64}", r.sha256 or ""), (name, r.filename)
    # Published values (keras.datasets.cifar10, torchvision's dataset code) for the tarballs.
    assert dl.SOURCES["cifar10"].files[0].sha256.startswith("6d958be074577803")
    assert dl.SOURCES["cifar100"].files[0].sha256.startswith("85cd44d02ba64377")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/sgdscope-meta-pwned",))


def test_pickled_object_in_batches_meta_is_refused(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    meta = tmp_path / "cifar10" / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [_Evil()]}, protocol=2))
    with pytest.raises(
        UnsafeFileError, match=r"batches\.meta: the pickle references posix\.system"
    ):
        load_dataset("cifar10", root=tmp_path, val_fraction=0.0)
    assert not os.path.exists("/tmp/sgdscope-meta-pwned")


def test_missing_batches_meta_is_fine(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "batches.meta").unlink()
    b = load_dataset("cifar10", root=tmp_path, val_fraction=0.0)
    assert "classes" not in b.info and len(b.train) == 20
