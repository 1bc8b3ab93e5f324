"""Datasets: digits split, IDX reading, one-sentence errors."""

import gzip

import numpy as np
import pytest
import torch

from harness.errors import UserError
from mpq.datasets import load_dataset, read_idx, write_idx


def test_digits_split():
    d = load_dataset("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.min()) >= 0 and float(d.x_train.max()) == 1.0
    # stratified: every class in both splits in proportion
    counts = torch.bincount(d.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    d2 = load_dataset("digits")
    assert torch.equal(d.x_test, d2.x_test) and torch.equal(d.y_train, d2.y_train)


def test_validation_split_comes_from_train_only():
    d = load_dataset("digits")
    xtr, ytr, xva, yva = d.split_validation(0.2, seed=0)
    assert len(ytr) + len(yva) == 1437 and abs(len(yva) - 287) <= 1
    # disjoint, and none of them is a test image
    tr = {tuple(v.flatten().tolist()) for v in xtr}
    va = {tuple(v.flatten().tolist()) for v in xva}
    te = {tuple(v.flatten().tolist()) for v in d.x_test}
    assert not (tr & va) or len(tr & va) < 5        # (digits has a few duplicate images)
    assert len(va & te) < 5
    _, _, xva2, _ = d.split_validation(0.2, seed=0)
    assert torch.equal(xva, xva2)
    assert len(d.split_validation(0.5, seed=1, max_val=100)[3]) == 100


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    a = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3)).astype(np.uint8)
    p = tmp_path / ("x.idx" + (".gz" if gz else ""))
    write_idx(p, a)
    np.testing.assert_array_equal(read_idx(p), a)


def _fake_mnist(root, n_train=30, n_test=12, gz=True, sub=""):
    rng = np.random.default_rng(1)
    d = root / sub if sub else root
    d.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    xtr = rng.integers(0, 256, size=(n_train, 28, 28)).astype(np.uint8)
    ytr = (np.arange(n_train) % 10).astype(np.uint8)
    write_idx(d / f"train-images-idx3-ubyte{sfx}", xtr)
    write_idx(d / f"train-labels-idx1-ubyte{sfx}", ytr)
    write_idx(d / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, size=(n_test, 28, 28)).astype(np.uint8))
    write_idx(d / f"t10k-labels-idx1-ubyte{sfx}", (np.arange(n_test) % 10).astype(np.uint8))
    return xtr, ytr


def test_mnist_from_local_idx_files(tmp_path):
    xtr, ytr = _fake_mnist(tmp_path / "a", gz=True)
    d = load_dataset("mnist", tmp_path / "a")
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (12, 1, 28, 28)
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), xtr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_train.numpy(), ytr)
    # torchvision layout, uncompressed, fashion
    _fake_mnist(tmp_path / "b", gz=False, sub="FashionMNIST/raw")
    assert load_dataset("fashionmnist", tmp_path / "b").x_test.shape == (12, 1, 28, 28)


def test_dataset_errors_are_one_sentence(tmp_path):
    for args, pat in [(("mnist", None), "--data-dir"), (("mnist", tmp_path / "nope"), "does not exist"),
                      (("mnist", tmp_path), "not found"), (("imagenet", None), "unknown dataset"),
                      (("cifar10", None), "--data-dir")]:
        with pytest.raises(UserError, match=pat) as e:
            load_dataset(*args)
        msg = str(e.value)
        assert msg.endswith(".") and "\n" not in msg
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(UserError, match="not an IDX"):
        read_idx(bad)
    trunc = tmp_path / "t"
    trunc.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(UserError, match="truncated"):
        read_idx(trunc)


def test_digits_views_reshape_the_same_split():
    d = load_dataset("digits")
    d32 = load_dataset("digits32")
    assert d32.x_train.shape == (1437, 3, 32, 32) and d32.x_test.shape == (360, 3, 32, 32)
    assert torch.equal(d32.y_test, d.y_test) and torch.equal(d32.x_test[:, 0], d32.x_test[:, 2])
    x, u = d.x_test[:, 0].numpy(), d32.x_test[:, 1].numpy()
    # bilinear, half-pixel centres: output i samples input (i + 0.5) / 4 - 0.5, clamped to the edges
    np.testing.assert_allclose(u[:, 0, 0], x[:, 0, 0], atol=1e-6)
    np.testing.assert_allclose(u[:, 31, 31], x[:, 7, 7], atol=1e-6)
    w = np.array([0.875, 0.125])
    np.testing.assert_allclose(u[:, 2, 2], np.einsum("i,nij,j->n", w, x[:, :2, :2], w), atol=1e-6)
    np.testing.assert_allclose(u[:, 5, 10], np.einsum("i,nij,j->n", [0.125, 0.875], x[:, 0:2, 2:4],
                                                      [0.875, 0.125]), atol=1e-6)
    assert 0.0 <= float(d32.x_train.min()) and float(d32.x_train.max()) <= 1.0
    d1 = load_dataset("digits1d")
    assert d1.x_train.shape == (1437, 8, 8) and torch.equal(d1.x_test[:, 3, :], d.x_test[:, 0, 3, :])
    seq, vec = load_dataset("digitsseq"), load_dataset("digitsvec")
    assert seq.x_test.shape == (360, 1, 64) and vec.x_test.shape == (360, 64)
    assert torch.equal(seq.x_test[:, 0, 8:16], d.x_test[:, 0, 1, :]) and torch.equal(vec.x_test, seq.x_test[:, 0])
    # views do not share storage with each other or with the cached arrays
    vec.x_test += 1
    assert float(load_dataset("digitsvec").x_test.max()) <= 1.0 and float(d.x_test.max()) <= 1.0
