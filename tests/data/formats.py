"""Writers of miniature datasets in their exact official formats, and a local HTTP server."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file as LeCun distributes it: 00 00 08 ndim, big-endian int32 dims, uint8 data."""
    assert arr.dtype == np.uint8
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    return header + arr.tobytes()


@dataclass
class Idx:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def write_idx_set(
    folder: Path,
    n_train: int = 20,
    n_test: int = 8,
    seed: int = 0,
    gz_train: bool = True,
    gz_test: bool = False,
) -> Idx:
    rng = np.random.default_rng(seed)
    d = Idx(
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr, gz in (
        ("train-images-idx3-ubyte", d.x_train, gz_train),
        ("train-labels-idx1-ubyte", d.y_train, gz_train),
        ("t10k-images-idx3-ubyte", d.x_test, gz_test),
        ("t10k-labels-idx1-ubyte", d.y_test, gz_test),
    ):
        raw = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return d


def cifar_batch(data: np.ndarray, labels: list[int], key: bytes = b"labels", **extra) -> bytes:
    """A batch as the official files hold it: a dict with bytes keys, pickled with protocol 2."""
    d = {
        b"batch_label": b"training batch",
        key: labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    d.update(extra)
    return pickle.dumps(d, protocol=2)


def write_cifar10(folder: Path, per_batch: int = 4, n_test: int = 3, seed: int = 0):
    """``folder/cifar-10-batches-py/`` with data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    top = folder / "cifar-10-batches-py"
    top.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        (top / f"data_batch_{i}").write_bytes(cifar_batch(x, y))
        xs.append(x)
        ys += y
    xt = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    yt = [int(v) for v in rng.integers(0, 10, n_test)]
    (top / "test_batch").write_bytes(cifar_batch(xt, yt))
    names = [
        n.encode() for n in ("airplane automobile bird cat deer dog frog horse ship truck").split()
    ]
    meta = {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (top / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(xs), np.array(ys), xt, np.array(yt)


def write_jpeg(path: Path, rgb: tuple[int, int, int] | int, size: int = 64) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(rgb, int) else "RGB"
    Image.new(mode, (size, size), rgb).save(path, format="JPEG", quality=95)


TINY_WNIDS = ["n03000000", "n01000000", "n02000000"]  # wnids.txt order (not sorted)
TINY_COLOURS = {"n01000000": (200, 20, 20), "n02000000": (20, 200, 20), "n03000000": (20, 20, 200)}


def write_tiny(folder: Path, per_class: int = 4, val_per_class: int = 2) -> Path:
    """A miniature ``tiny-imagenet-200`` tree: wnids.txt, train/<wnid>/images, val annotations."""
    top = folder / "tiny-imagenet-200"
    top.mkdir(parents=True, exist_ok=True)
    (top / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (top / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS))
    for w in TINY_WNIDS:
        for k in range(per_class):
            # One greyscale image per class, as the real set has a few.
            colour = 128 if k == per_class - 1 else TINY_COLOURS[w]
            write_jpeg(top / "train" / w / "images" / f"{w}_{k}.JPEG", colour)
        (top / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{k}.JPEG\t0\t0\t63\t63\n" for k in range(per_class))
        )
    lines, i = [], 0
    for w in TINY_WNIDS:
        for _ in range(val_per_class):
            write_jpeg(top / "val" / "images" / f"val_{i}.JPEG", TINY_COLOURS[w])
            lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
            i += 1
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    write_jpeg(top / "test" / "images" / "test_0.JPEG", (1, 2, 3))
    return top


PTB_TRAIN = " the cat sat on the mat \n a dog sat on a log \n the dog saw the cat \n"
PTB_VALID = " the cat saw a dog \n"
PTB_TEST = " a cat sat on the <unk> \n the mat \n"


def write_ptb(folder: Path, train: str = PTB_TRAIN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train = train + " <unk> \n"  # the official train text contains <unk> tokens
    for name, text in (
        ("ptb.train.txt", train),
        ("ptb.valid.txt", PTB_VALID),
        ("ptb.test.txt", PTB_TEST),
    ):
        (folder / name).write_text(text)
    return folder


# ---------------------------------------------------------------- local HTTP server


@dataclass
class FileServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 with Range support.

    ``cut[path] = n``: the next response for ``path`` announces the full length but sends only n
    bytes, then closes the connection (an interrupted transfer). ``ignore_range``: answer 200.
    """

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            rng = self.headers.get("Range")
            state.requests.append((path, rng))
            body = state.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Connection", "close")
            self.end_headers()
            n = state.cut.pop(path, None)
            self.wfile.write(chunk if n is None else chunk[:n])
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
