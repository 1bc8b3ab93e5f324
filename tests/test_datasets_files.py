"""Datasets from local files: CIFAR-10/100 binary records, UCI-HAR text
files and Speech Commands WAV folders, each written here in its exact format
(the writers below are independent of the loaders), loaded, and then broken
(truncated, corrupted, missing) to check the one-sentence errors, also
through `mico search`."""

import math
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError
from mpq.datasets import DATASETS, canonical_name, dataset_info, dataset_shape, load_dataset, write_idx
from mpq.datasets import speech_commands as sc

RNG = np.random.default_rng(7)


def one_sentence(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg.endswith(".") and ". " not in msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# ---- writers, one per format ------------------------------------------------------------------
def write_cifar10(root, per_batch=2, n_test=3):
    """cifar-10-batches-bin/: 5 train batches + test batch of <label><3072 pixels> records."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    out = {}
    for fname, n in [*((f"data_batch_{i}.bin", per_batch) for i in range(1, 6)), ("test_batch.bin", n_test)]:
        labels = RNG.integers(0, 10, n).astype(np.uint8)
        pix = RNG.integers(0, 256, (n, 3072)).astype(np.uint8)
        (d / fname).write_bytes(b"".join(bytes([lab]) + p.tobytes() for lab, p in zip(labels, pix)))
        out[fname] = (labels, pix)
    return d, out


def write_cifar100(root, n_train=4, n_test=2):
    """cifar-100-binary/{train,test}.bin: <coarse><fine><3072 pixels> records."""
    d = root / "cifar-100-binary"
    d.mkdir(parents=True)
    out = {}
    for fname, n in (("train.bin", n_train), ("test.bin", n_test)):
        coarse = RNG.integers(0, 20, n).astype(np.uint8)
        fine = RNG.integers(0, 100, n).astype(np.uint8)
        pix = RNG.integers(0, 256, (n, 3072)).astype(np.uint8)
        (d / fname).write_bytes(b"".join(bytes([c, f]) + p.tobytes() for c, f, p in zip(coarse, fine, pix)))
        out[fname] = (coarse, fine, pix)
    return d, out


def _uci_lines(a):
    """UCI-HAR's own text layout: right-aligned %.7e with three-digit exponents."""
    return "".join(" " + " ".join(f"{v:15.7e}".replace("e-0", "e-00").replace("e+0", "e+00") for v in row) + "\n"
                   for row in a)


def write_har(root, n_train=6, n_test=4):
    """UCI HAR Dataset/{train,test}/: X_*.txt (561 features), y_*.txt (1..6),
    subject_*.txt and Inertial Signals/<signal>_*.txt (128 steps)."""
    d = root / "UCI HAR Dataset"
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        s = d / split
        (s / "Inertial Signals").mkdir(parents=True)
        x = RNG.uniform(-1, 1, (n, 561))
        y = np.arange(n) % 6 + 1
        (s / f"X_{split}.txt").write_text(_uci_lines(x))
        (s / f"y_{split}.txt").write_text("".join(f"{v}\n" for v in y))
        (s / f"subject_{split}.txt").write_text("".join(f"{v}\n" for v in RNG.integers(1, 31, n)))
        sig = {}
        for k, name in enumerate(sc_signals()):
            sig[name] = RNG.normal(k * 0.1, 0.2 + k * 0.1, (n, 128))
            (s / "Inertial Signals" / f"{name}_{split}.txt").write_text(_uci_lines(sig[name]))
        out[split] = (x, y, sig)
    return d, out


def sc_signals():
    from mpq.datasets.har import SIGNALS

    return SIGNALS


def wav_bytes(samples, rate=16000, channels=1, bits=16):
    """A canonical RIFF/WAVE PCM file, written by hand (not by scipy)."""
    data = np.asarray(samples, dtype="<i2" if bits == 16 else np.uint8).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(freq, n=16000, amp=8000):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / 16000)).astype(np.int16)


def write_speech(root, per_word=3, unknown=("bed", "cat"), noise=True):
    """speech_commands_v0.02/: <word>/<id>.wav, testing_list.txt,
    validation_list.txt, _background_noise_/*.wav.  Clip 0 of every folder is
    in the test list, clip 1 in the validation list, the rest train only."""
    d = root / "speech_commands_v0.02"
    test, val = [], []
    for w, word in enumerate((*sc.WORDS, *unknown)):
        (d / word).mkdir(parents=True)
        for i in range(per_word):
            n = 16000 if i != 2 else 12000          # a short clip: padded to 1 s
            (d / word / f"{w:04x}_nohash_{i}.wav").write_bytes(wav_bytes(tone(200 + 150 * w + 10 * i, n)))
            (test if i == 0 else val if i == 1 else []).append(f"{word}/{w:04x}_nohash_{i}.wav")
    (d / "testing_list.txt").write_text("\n".join(test) + "\n")
    (d / "validation_list.txt").write_text("\n".join(val) + "\n")
    if noise:
        (d / "_background_noise_").mkdir()
        (d / "_background_noise_" / "white.wav").write_bytes(wav_bytes(RNG.integers(-3000, 3000, 40000)))
    return d


def write_mnist(root):
    for stem, shape in (("train-images-idx3-ubyte", (12, 28, 28)), ("train-labels-idx1-ubyte", (12,)),
                        ("t10k-images-idx3-ubyte", (5, 28, 28)), ("t10k-labels-idx1-ubyte", (5,))):
        write_idx(root / stem, RNG.integers(0, 10 if len(shape) == 1 else 256, shape).astype(np.uint8))
    return root


# ---- CIFAR -------------------------------------------------------------------------------------
def test_cifar10_binary_records(tmp_path):
    _, out = write_cifar10(tmp_path)
    for data_dir in (tmp_path, tmp_path / "cifar-10-batches-bin"):      # parent or extracted folder
        d = load_dataset("cifar10", data_dir)
        assert d.x_train.shape == (10, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
        assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    labels = np.concatenate([out[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    pix = np.concatenate([out[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(d.y_train.numpy(), labels)
    np.testing.assert_array_equal(d.y_test.numpy(), out["test_batch.bin"][0])
    # red plane first, then green, then blue; each 32x32 row-major
    x = d.x_train.numpy()
    np.testing.assert_allclose(x[3, 0, 0, :], pix[3, :32] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x[3, 1, 2, 5], pix[3, 1024 + 2 * 32 + 5] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x[3, 2, 31, 31], pix[3, 3071] / 255.0, rtol=1e-6)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_cifar100_fine_and_coarse(tmp_path):
    _, out = write_cifar100(tmp_path)
    fine = load_dataset("cifar100", tmp_path)
    coarse = load_dataset("cifar-100-coarse", tmp_path)
    np.testing.assert_array_equal(fine.y_train.numpy(), out["train.bin"][1])
    np.testing.assert_array_equal(coarse.y_train.numpy(), out["train.bin"][0])
    np.testing.assert_array_equal(fine.y_test.numpy(), out["test.bin"][1])
    assert torch.equal(fine.x_train, coarse.x_train) and fine.x_train.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(fine.x_test[1].numpy().reshape(-1), out["test.bin"][2][1] / 255.0, rtol=1e-6)


def test_cifar_errors(tmp_path):
    d, _ = write_cifar10(tmp_path / "a")
    p = d / "data_batch_2.bin"
    p.write_bytes(p.read_bytes()[:-1])                                  # truncated
    with pytest.raises(UserError, match="truncated or not a CIFAR binary file") as e:
        load_dataset("cifar10", d)
    assert "data_batch_2.bin" in one_sentence(e)
    d, _ = write_cifar10(tmp_path / "b")
    p = d / "test_batch.bin"
    b = bytearray(p.read_bytes())
    b[3073] = 17                                                        # record 1's label byte
    p.write_bytes(bytes(b))
    with pytest.raises(UserError, match=r"record 1 of .*test_batch.bin has label 17, outside 0..9") as e:
        load_dataset("cifar10", d)
    one_sentence(e)
    (d / "data_batch_4.bin").unlink()
    with pytest.raises(UserError, match="data_batch_4.bin for cifar10 was not found") as e:
        load_dataset("cifar10", d)
    one_sentence(e)
    # CIFAR-100: the 3074-byte record; a CIFAR-10 file is not one; a bad coarse byte is caught for "fine" too
    d100, _ = write_cifar100(tmp_path / "c")
    (d100 / "train.bin").write_bytes((d / "test_batch.bin").read_bytes())
    with pytest.raises(UserError, match="3074-byte records") as e:
        load_dataset("cifar100", d100)
    one_sentence(e)
    d100, _ = write_cifar100(tmp_path / "d")
    b = bytearray((d100 / "test.bin").read_bytes())
    b[0] = 20
    (d100 / "test.bin").write_bytes(bytes(b))
    with pytest.raises(UserError, match="label 20, outside 0..19"):
        load_dataset("cifar100", d100)
    (d100 / "test.bin").write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        load_dataset("cifar100", d100)


# ---- UCI-HAR ----------------------------------------------------------------------------------
def test_har_features_and_signals(tmp_path):
    _, out = write_har(tmp_path)
    feats = load_dataset("har", tmp_path)
    assert feats.x_train.shape == (6, 561) and feats.x_test.shape == (4, 561)
    np.testing.assert_allclose(feats.x_train.numpy(), (out["train"][0] + 1) / 2, atol=1e-6)
    np.testing.assert_array_equal(feats.y_train.numpy(), out["train"][1] - 1)
    np.testing.assert_array_equal(feats.y_test.numpy(), out["test"][1] - 1)
    sig = load_dataset("har_signals", tmp_path / "UCI HAR Dataset")
    assert sig.x_train.shape == (6, 9, 128) and sig.x_test.shape == (4, 9, 128)
    x = sig.x_train.numpy()
    assert 0.0 <= x.min() and x.max() <= 1.0
    # channel k is SIGNALS[k], z-scored with the train statistics of that channel
    for k, name in enumerate(sc_signals()):
        tr, te = out["train"][2][name], out["test"][2][name]
        mu, sd = tr.mean(), tr.std()
        np.testing.assert_allclose(x[:, k], np.clip(0.5 + (tr - mu) / (8 * sd), 0, 1), atol=1e-5)
        np.testing.assert_allclose(sig.x_test.numpy()[:, k], np.clip(0.5 + (te - mu) / (8 * sd), 0, 1), atol=1e-5)
    assert abs(float(x.mean()) - 0.5) < 0.01


def _break_har(tmp_path, tag, rel, edit):
    d, _ = write_har(tmp_path / tag)
    p = d / rel
    p.write_text(edit(p.read_text()))
    return tmp_path / tag


@pytest.mark.parametrize("rel,edit,name,pat", [
    ("train/X_train.txt", lambda t: "\n".join(t.splitlines()[:-1]) + "\n", "har",
     r"X_train.txt has 5 lines but .*y_train.txt has 6 labels"),                       # truncated
    ("train/X_train.txt", lambda t: t.replace(t.split()[600], "abc", 1), "har",
     r"line 2 of .*X_train.txt holds 'abc', which is not a number"),                    # corrupted
    ("test/X_test.txt", lambda t: t.replace(t.split()[3], "", 1), "har",
     r"line 1 of .*X_test.txt has 560 values, expected 561"),
    ("train/y_train.txt", lambda t: t.replace("3", "7", 1), "har", r"record 2 of .*y_train.txt has label 7"),
    ("train/y_train.txt", lambda t: t.replace("3", "3.5", 1), "har", r"line 3 of .*y_train.txt .*not an integer"),
    ("test/Inertial Signals/body_gyro_y_test.txt", lambda t: t[: len(t) // 2 - 100], "har_signals",
     r"line 2 of .*body_gyro_y_test.txt has \d+ values, expected 128"),                # cut mid-line
    ("test/Inertial Signals/total_acc_z_test.txt", lambda t: "\n".join(t.splitlines()[:2]), "har_signals",
     r"total_acc_z_test.txt has 2 lines but .*body_acc_x_test.txt has 4"),
    ("train/Inertial Signals/body_acc_x_train.txt", lambda t: t.replace(t.split()[5], "nan"), "har_signals",
     r"not a finite number"),
])
def test_har_errors(tmp_path, rel, edit, name, pat):
    root = _break_har(tmp_path, "x", rel, edit)
    with pytest.raises(UserError, match=pat) as e:
        load_dataset(name, root)
    one_sentence(e)


def test_har_missing_file(tmp_path):
    d, _ = write_har(tmp_path)
    (d / "test" / "Inertial Signals" / "body_acc_z_test.txt").unlink()
    load_dataset("har", tmp_path)                                         # the features view does not need it
    with pytest.raises(UserError, match="body_acc_z_test.txt for har_signals was not found") as e:
        load_dataset("har_signals", tmp_path)
    one_sentence(e)
    with pytest.raises(UserError, match="train for har was not found under") as e:
        load_dataset("har", tmp_path / "UCI HAR Dataset" / "test")
    one_sentence(e)


# ---- Speech Commands -------------------------------------------------------------------------
def test_mfcc_front_end_matches_python_speech_features():
    """The batched front end is python_speech_features' fbank (40 ms / 20 ms,
    periodic Hann, 1024-point FFT, 40 mel bins 20-4000 Hz, no pre-emphasis),
    log(+1e-6) and the orthonormal DCT-II, clip by clip."""
    from python_speech_features import fbank
    from scipy.fft import dct
    from scipy.signal.windows import hann

    clips = np.stack([tone(440) / 32768.0, RNG.normal(0, 0.1, 16000), np.zeros(16000)])
    got = sc.mfcc(clips, batch=2)
    assert got.shape == (3, 49, 10)
    for c, g in zip(clips, got):
        mel, _ = fbank(c, 16000, 0.04, 0.02, 40, 1024, 20, 4000, 0.0, lambda n: hann(n, sym=False))
        ref = dct(np.log(mel + 1e-6), type=2, axis=1, norm="ortho")[:, :10]
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-9)
    # silence: every frame is log(1e-6) in every mel bin -> only c0, = sqrt(40) * log(1e-6)
    np.testing.assert_allclose(got[2, :, 0], math.sqrt(40) * math.log(1e-6), rtol=1e-6)
    assert np.abs(got[2, :, 1:]).max() < 1e-6


def test_speech_commands_splits_and_classes(tmp_path):
    write_speech(tmp_path)
    d = load_dataset("speechcommands", tmp_path)
    # train: 2 clips x 10 words (the validation one included) + ceil(20/10)=2 unknown + 2 silence
    # test: 1 clip x 10 words + ceil(10/10)=1 unknown + 1 silence
    assert d.x_train.shape == (24, 1, 49, 10) and d.x_test.shape == (12, 1, 49, 10)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert torch.bincount(d.y_train, minlength=12).tolist() == [2] * 10 + [2, 2]
    assert torch.bincount(d.y_test, minlength=12).tolist() == [1] * 10 + [1, 1]
    assert sc.LABELS[sc.SILENCE] == "_silence_" and sc.LABELS[sc.UNKNOWN] == "_unknown_"
    x = d.x_train.numpy()
    assert 0.0 <= x.min() and x.max() <= 1.0 and abs(float(x.mean()) - 0.5) < 0.05
    # the 1-D view is the same features, coefficients as channels
    d1 = load_dataset("speechcommands_1d", tmp_path)
    assert d1.x_train.shape == (24, 10, 49)
    assert torch.equal(d1.x_train, d.x_train[:, 0].transpose(1, 2)) and torch.equal(d1.y_test, d.y_test)
    # deterministic
    assert torch.equal(load_dataset("speechcommands", tmp_path).x_test, d.x_test)


def test_speech_commands_features_are_the_clips(tmp_path):
    """The test split's 'down' clip (label 0) has the MFCCs of that WAV,
    after the train-statistics normalisation."""
    root = write_speech(tmp_path)
    d = load_dataset("speechcommands", tmp_path)
    xs, ys = [], []
    for rel in (root / "testing_list.txt").read_text().split():
        if rel.split("/")[0] in sc.WORDS:
            xs.append(sc.fit_clip(sc.read_wav(root / rel)))
            ys.append(sc.WORDS.index(rel.split("/")[0]))
    # the same clips in the same (folder) order are the first ten test items
    np.testing.assert_array_equal(d.y_test.numpy()[:10], ys)
    raw = sc.mfcc(np.stack(xs))
    got = d.x_test.numpy()[:10, 0]
    # per coefficient, the map raw -> x is one increasing affine function (where not clipped)
    for k in range(10):
        inside = (got[:, :, k] > 0) & (got[:, :, k] < 1)
        r, g = raw[:, :, k][inside], got[:, :, k][inside]
        assert inside.sum() > 100
        slope, icpt = np.polyfit(r, g, 1)
        assert slope > 0 and np.abs(slope * r + icpt - g).max() < 1e-5


def test_speech_commands_without_noise_folder_gives_zero_silence(tmp_path):
    write_speech(tmp_path, noise=False, unknown=())
    d = load_dataset("speechcommands_1d", tmp_path)
    assert torch.bincount(d.y_train, minlength=12).tolist() == [2] * 10 + [2, 0]
    sil = d.x_train[d.y_train == sc.SILENCE]
    assert torch.equal(sil[0], sil[1])


@pytest.mark.parametrize("case,pat", [
    ("truncated", r"yes/.*\.wav is a truncated WAV file"),
    ("corrupted", r"yes/.*\.wav is not a valid WAV file \(File format b'JUNK' not understood\)"),
    ("adpcm", r"not a valid WAV file \(Unknown wave file format: RHETOREX_ADPCM\)"),
    ("garbage", r"yes/.*\.wav is not a valid WAV file"),
    ("nodata", r"not a valid WAV file \(malformed header or no data chunk\)"),
    ("rate", r"sampled at 8000 Hz; Speech Commands clips must be 16000 Hz"),
    ("stereo", r"has 2 channels"),
    ("8bit", r"holds uint8 samples"),
    ("list", r"testing_list.txt lists yes/missing.wav, which is not under"),
    ("listline", r"line 1 of .*testing_list.txt is 'just-a-name', not a <word>/<file>.wav entry"),
    ("folder", r"the word folder 'left' of Speech Commands was not found"),
])
def test_speech_commands_errors(tmp_path, case, pat):
    root = write_speech(tmp_path)
    wav = sorted((root / "yes").glob("*.wav"))[2]
    good = wav.read_bytes()
    if case == "truncated":
        wav.write_bytes(good[:-1000])
    elif case == "corrupted":
        wav.write_bytes(b"JUNK" + good[4:])
    elif case == "adpcm":                                               # a big-endian header misread
        wav.write_bytes(b"RIFX" + good[4:])
    elif case == "nodata":
        wav.write_bytes(good.replace(b"data", b"junk", 1))
    elif case == "garbage":
        wav.write_bytes(b"RIFF\x00")
    elif case == "rate":
        wav.write_bytes(wav_bytes(tone(300, 8000), rate=8000))
    elif case == "stereo":
        wav.write_bytes(wav_bytes(np.repeat(tone(300), 2), channels=2))
    elif case == "8bit":
        wav.write_bytes(wav_bytes(np.full(16000, 128), bits=8))
    elif case == "list":
        (root / "testing_list.txt").write_text("yes/missing.wav\n")
    elif case == "listline":
        (root / "testing_list.txt").write_text("just-a-name\n")
    elif case == "folder":
        for p in (root / "left").iterdir():
            p.unlink()
        (root / "left").rmdir()
    with pytest.raises(UserError, match=pat) as e:
        load_dataset("speechcommands", tmp_path)
    one_sentence(e)


# ---- the registry ------------------------------------------------------------------------------
def _write_any(name, root):
    kind = dataset_info(name).loader.__module__.rsplit(".", 1)[-1]
    {"cifar": lambda: write_cifar100(root) if "100" in name else write_cifar10(root),
     "har": lambda: write_har(root), "speech_commands": lambda: write_speech(root),
     "idx": lambda: write_mnist(root)}.get(kind, lambda: None)()
    return root if dataset_info(name).needs_files else None


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_shape_needs_no_files_and_matches_the_loader(tmp_path, name):
    shape, classes = dataset_shape(name)
    d = load_dataset(name, _write_any(name, tmp_path))
    assert d.name == name and d.input_shape == shape == tuple(d.x_test.shape[1:])
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    assert int(d.y_train.max()) < classes and int(d.y_test.min()) >= 0
    assert len(d.x_train) == len(d.y_train) and len(d.x_test) == len(d.y_test)


def test_names_and_shapes():
    assert dataset_shape("cifar10") == ((3, 32, 32), 10)
    assert dataset_shape("cifar100") == ((3, 32, 32), 100) and dataset_shape("CIFAR100-coarse") == ((3, 32, 32), 20)
    assert dataset_shape("har") == ((561,), 6) and dataset_shape("har_signals") == ((9, 128), 6)
    assert dataset_shape("speechcommands") == ((1, 49, 10), 12) and dataset_shape("speech-commands-1d") == ((10, 49), 12)
    assert dataset_shape("digits32") == ((3, 32, 32), 10) and dataset_shape("digits1d") == ((8, 8), 10)
    assert canonical_name("Fashion-MNIST") == "fashionmnist"
    with pytest.raises(UserError, match="unknown dataset 'imagenet'") as e:
        dataset_shape("imagenet")
    one_sentence(e)
    assert not dataset_info("digits32").needs_files and dataset_info("har").needs_files


# ---- through the CLI: one sentence, exit 2, before any training ---------------------------------
def _cli(args):
    return CliRunner().invoke(main, ["search", "--model", "lenet", *map(str, args)], catch_exceptions=False)


def _truncate_cifar(root):
    p = write_cifar10(root)[0] / "data_batch_5.bin"
    p.write_bytes(p.read_bytes()[:5000])


def _corrupt_cifar(root):
    p = write_cifar10(root)[0] / "data_batch_1.bin"
    p.write_bytes(b"\xff" + p.read_bytes()[1:])


def _truncate_har(root):
    p = write_har(root)[0] / "test" / "y_test.txt"
    p.write_text("1\n2\n")


def _corrupt_har(root):
    p = write_har(root)[0] / "train" / "X_train.txt"
    p.write_text(p.read_text().replace("e", "x", 1))


def _truncate_wav(root):
    p = next((write_speech(root) / "no").glob("*.wav"))
    p.write_bytes(p.read_bytes()[:100])


def _corrupt_wav(root):
    p = next((write_speech(root) / "no").glob("*.wav"))
    p.write_bytes(b"WAVE" + p.read_bytes()[4:])


@pytest.mark.parametrize("dataset,breaker,pat", [
    ("cifar10", _truncate_cifar, "truncated or not a CIFAR binary file"),
    ("cifar10", _corrupt_cifar, "has label 255, outside 0..9"),
    ("har", _truncate_har, "has 4 lines but"),
    ("har", _corrupt_har, "which is not a number"),
    ("speechcommands", _truncate_wav, "is a truncated WAV file"),
    ("speechcommands", _corrupt_wav, "is not a valid WAV file"),
    ("har_signals", lambda root: None, "was not found under"),
])
def test_cli_fails_fast_with_one_sentence(tmp_path, dataset, breaker, pat):
    breaker(tmp_path)
    r = _cli(["--dataset", dataset, "--data-dir", tmp_path, "-o", tmp_path / "s.json"])
    assert r.exit_code == 2, r.output
    assert pat in r.output and "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), r.output
    assert ". " not in lines[0], r.output
    assert not (tmp_path / "s.json").exists() and not (tmp_path / ".mico-cache").exists()
