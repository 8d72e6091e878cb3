"""Penn Treebank (Mikolov's word-level version) as fixed BPTT windows for language modelling.

Files: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` (one sentence a line, words split by
spaces, rare words already ``<unk>``). Each line gets an ``<eos>`` token; the vocabulary is built
from train in order of first appearance (10 000 words for the official files).

The token stream is batchified as usual — cut into ``batch_size`` contiguous rows — and each row
into non-overlapping windows of ``bptt`` tokens. An example is one window: the input is the
(bptt,) token ids and the target the (bptt,) next tokens. Examples are ordered so that reading
them sequentially in batches of ``batch_size`` walks the rows in step, the classic order; each
example starts from a zero hidden state, so the loss is a fixed function of the parameters (what
curvature measurements need), at a small cost in perplexity compared with carrying the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._files import DatasetFormatError, find_first
from ._registry import RawData, register_dataset
from .download import locate_or_download

__all__ = ["PtbCorpus", "batchify", "bptt_windows", "load_ptb_corpus", "ptb"]

_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
EOS = "<eos>"
UNK = "<unk>"


@dataclass
class PtbCorpus:
    """The three splits as int64 token-id streams and the vocabulary (id -> word)."""

    vocab: list[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def _folders(root: Path) -> list[Path]:
    # Ours, then the layout of simple-examples.tgz, then the root itself.
    return [
        root / "ptb",
        root / "ptb" / "simple-examples" / "data",
        root / "simple-examples" / "data",
        root,
    ]


def _locate(root: Path) -> Path | None:
    for f in _folders(root):
        if all((f / n).is_file() for n in _FILES):
            return f
    return None


def _words(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({e}); download again") from e
    out: list[str] = []
    for line in text.splitlines():
        out.extend(line.split())
        out.append(EOS)
    return out


def load_ptb_corpus(folder: Path) -> PtbCorpus:
    """Read the three files from ``folder``; vocabulary from train (first-appearance order).

    Words of valid / test missing from the train vocabulary map to ``<unk>``.
    """
    paths = [find_first([folder], [n]) for n in _FILES]
    if any(p is None for p in paths):
        raise DatasetFormatError(f"{folder}: expected {', '.join(_FILES)}")
    train_words = _words(paths[0])  # type: ignore[arg-type]
    if len(train_words) < 2:
        raise DatasetFormatError(f"{paths[0]}: empty training text")
    index: dict[str, int] = {}
    for w in train_words:
        index.setdefault(w, len(index))

    def ids(words: list[str], path: Path) -> np.ndarray:
        unk = index.get(UNK)
        out = np.empty(len(words), dtype=np.int64)
        for i, w in enumerate(words):
            j = index.get(w, unk)
            if j is None:
                raise DatasetFormatError(
                    f"{path}: word {w!r} is not in the training vocabulary and train has no "
                    f"{UNK!r} token; not the official PTB files?"
                )
            out[i] = j
        return out

    return PtbCorpus(
        vocab=list(index),
        train=ids(train_words, paths[0]),  # type: ignore[arg-type]
        valid=ids(_words(paths[1]), paths[1]),  # type: ignore[arg-type]
        test=ids(_words(paths[2]), paths[2]),  # type: ignore[arg-type]
    )


def batchify(stream: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a token stream (L,) into ``batch_size`` contiguous rows: (batch_size, L // batch_size).

    The last ``L % batch_size`` tokens are dropped.
    """
    cols = len(stream) // batch_size
    return stream[: cols * batch_size].reshape(batch_size, cols)


def bptt_windows(rows: np.ndarray, bptt: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of the batchified rows (B, C): inputs and next-token targets.

    Returns:
        ``(x, y)``, each (N, bptt) int64 with N = B · ((C - 1) // bptt); example ``j·B + b`` is
        window j of row b, and ``y[n, t]`` is the token after ``x[n, t]``.
    """
    b, c = rows.shape
    n_win = (c - 1) // bptt
    if n_win < 1:
        raise ConfigError(
            f"bptt={bptt} with batch_size={b}: each row holds only {c} tokens; lower bptt "
            "or batch_size"
        )
    span = n_win * bptt
    x = rows[:, :span].reshape(b, n_win, bptt).transpose(1, 0, 2).reshape(-1, bptt)
    y = rows[:, 1 : span + 1].reshape(b, n_win, bptt).transpose(1, 0, 2).reshape(-1, bptt)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


@register_dataset("ptb", locate=_locate)
def ptb(
    *,
    root: Path,
    download: bool = False,
    bptt: int = 35,
    batch_size: int = 20,
    test_split: str = "test",
) -> RawData:
    """Penn Treebank language modelling: 929k / 73k / 82k tokens, 10 000-word vocabulary.

    Reads the three files from ``root/ptb`` (or ``simple-examples/data`` below it).

    Args:
        bptt: tokens per example (the truncated-BPTT length).
        batch_size: number of parallel rows the stream is cut into before windowing (use the
            training batch size to reproduce the classic batch order).
        test_split: which official file becomes the test split, "test" or "valid" (our val split
            is carved out of train by the shared preparation).

    Returns:
        ``RawData`` with ``task="language_model"``: x and y (N, bptt) int64 token ids,
        ``num_classes`` = vocabulary size. Standardisation does not apply.
    """
    if bptt < 1 or batch_size < 1:
        raise ConfigError(f"ptb: bptt={bptt} and batch_size={batch_size} must be >= 1")
    if test_split not in ("test", "valid"):
        raise ConfigError(f"data.options.test_split={test_split!r}: 'test' or 'valid'")
    folder = locate_or_download(
        "ptb", root, download, _locate, expected=list(_FILES), searched=_folders(root)
    )
    corpus = load_ptb_corpus(folder)
    x_tr, y_tr = bptt_windows(batchify(corpus.train, batch_size), bptt)
    held_out = corpus.test if test_split == "test" else corpus.valid
    x_te, y_te = bptt_windows(batchify(held_out, batch_size), bptt)
    return RawData(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes=len(corpus.vocab),
        task="language_model",
        info={
            "source": str(folder),
            "vocab_size": len(corpus.vocab),
            "bptt": bptt,
            "stream_batch_size": batch_size,
            "train_tokens": len(corpus.train),
            "test_split": test_split,
        },
    )
