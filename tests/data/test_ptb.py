"""Penn Treebank text files -> vocabulary, batchified streams and BPTT windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdscope.data import load_dataset
from sgdscope.data.ptb import batchify, bptt_windows, load_ptb_corpus
from sgdscope.errors import ConfigError, DatasetNotFoundError

from .formats import write_ptb


def test_vocabulary_from_train_with_eos(tmp_path):
    c = load_ptb_corpus(write_ptb(tmp_path / "ptb"))
    assert c.vocab[:5] == ["the", "cat", "sat", "on", "mat"]
    assert "<eos>" in c.vocab and "<unk>" in c.vocab
    eos = c.vocab.index("<eos>")
    assert c.train[6] == eos and int((c.train == eos).sum()) == 4  # one per line
    # "saw" and "a" are in train; test's "<unk>" maps to the train <unk> id.
    assert [c.vocab[i] for i in c.test[:7]] == ["a", "cat", "sat", "on", "the", "<unk>", "<eos>"]


def test_batchify_and_windows_are_next_token_pairs():
    stream = np.arange(23)
    rows = batchify(stream, 2)
    assert rows.shape == (2, 11) and rows[1, 0] == 11
    x, y = bptt_windows(rows, 4)
    # (11 - 1) // 4 = 2 windows per row; example j*B + b is window j of row b.
    assert x.shape == (4, 4) and y.shape == (4, 4)
    np.testing.assert_array_equal(x[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(x[1], [11, 12, 13, 14])
    np.testing.assert_array_equal(x[2], [4, 5, 6, 7])
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ConfigError, match="lower bptt"):
        bptt_windows(rows, 20)


def test_ptb_dataset_bundle(tmp_path):
    write_ptb(tmp_path / "ptb")
    b = load_dataset("ptb", root=tmp_path, bptt=3, batch_size=2, val_fraction=0.0, probe_size=2)
    c = load_ptb_corpus(tmp_path / "ptb")
    assert b.task == "language_model" and b.num_classes == len(c.vocab)
    assert b.input_shape == (3,) and b.train.y.shape == (len(b.train), 3)
    assert b.train.y.dtype == torch.int64
    # Not standardised: inputs are the integer token ids (stored as float by the preparation).
    assert torch.equal(b.train.x, b.train.x.round()) and int(b.train.x.max()) < b.num_classes
    rows = batchify(c.train, 2)
    torch.testing.assert_close(b.train.x[0].long(), torch.from_numpy(rows[0, :3]))
    torch.testing.assert_close(b.train.y[0], torch.from_numpy(rows[0, 1:4]))
    valid = load_dataset("ptb", root=tmp_path, bptt=2, batch_size=1, test_split="valid")
    assert valid.test is not None and len(valid.test) == (len(c.valid) - 1) // 2


def test_simple_examples_layout_and_missing(tmp_path):
    write_ptb(tmp_path / "ptb" / "simple-examples" / "data")
    assert load_dataset("ptb", root=tmp_path, bptt=2, batch_size=1).num_classes > 5
    with pytest.raises(DatasetNotFoundError, match=r"ptb\.train\.txt.*sgdscope data download ptb"):
        load_dataset("ptb", root=tmp_path / "empty")
