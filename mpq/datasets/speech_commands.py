"""Speech Commands v0.02 from its WAV folders, with the keyword-spotting MFCC
front end of the DS-CNN / MLPerf Tiny KWS setup, computed in Python.

Files (the extracted ``speech_commands_v0.02`` folder): ``<word>/<id>.wav``
(16 kHz mono 16-bit PCM, at most 1 s), ``testing_list.txt`` (the test split:
one ``<word>/<id>.wav`` a line), ``validation_list.txt`` (optional) and
``_background_noise_/*.wav`` (optional, for the silence class).

Classes (12, MLPerf Tiny order): the ten words ``WORDS`` (labels 0..9),
``_silence_`` (10) and ``_unknown_`` (11).  Per split, with K the number of
clips of the ten words in it: ``ceil(K / 10)`` unknown clips are drawn (fixed
seed) from every other word folder, and ``ceil(K / 10)`` silence clips are
cut from the background-noise files: a random file, a random 1 s offset and a
random volume in [0, 1) (all-zero clips when there is no noise folder).  The
test split is exactly ``testing_list.txt``; the train split is every other
clip, the ``validation_list.txt`` ones included, because mico holds out its
own validation set from train.

Front end (per clip): int16 / 32768, zero-padded or trimmed at the end to
16000 samples; frames of 40 ms (640 samples) every 20 ms (320) -> 49 frames,
periodic Hann window, 1024-point power spectrum |FFT|^2 / 1024, 40 triangular
mel filters from 20 Hz to 4000 Hz (python_speech_features' HTK-mel filter
bank), natural log of (energy + 1e-6), orthonormal DCT-II, first 10
coefficients -> 49 x 10 (the Hello-Edge DS-CNN setting: 40 ms / 20 ms / 10
MFCCs).  Framing is done here for a whole batch of clips at once; the power
spectrum and the filter bank are python_speech_features'.  Each coefficient
is then z-scored with the train split's statistics and mapped to [0, 1] by
``clip(0.5 + z / 8, 0, 1)``.

Views: ``speechcommands`` float32 (N, 1, 49, 10) (time x coefficient image,
for ``dscnn``); ``speechcommands_1d`` float32 (N, 10, 49) (coefficients as
channels over time, for 1-D models such as ``m5``).
"""

from __future__ import annotations

import itertools
import logging
import math
import struct
import warnings
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.errors import UserError

from .base import Dataset
from .files import data_root, tensors, unit_from_zscore

log = logging.getLogger(__name__)

WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
LABELS = (*WORDS, "_silence_", "_unknown_")
SILENCE, UNKNOWN = len(WORDS), len(WORDS) + 1
SUBDIRS = ("speech_commands_v0.02", "SpeechCommands/speech_commands_v0.02")
NOISE_DIR = "_background_noise_"
EXTRA_FRACTION = 0.1           # silence and unknown clips, each, per keyword clip
SPLIT_SEED = 0                 # fixed: the splits never depend on --seed

SAMPLE_RATE = 16000
CLIP = SAMPLE_RATE             # 1 s
WINDOW, STRIDE = 640, 320      # 40 ms, 20 ms
NFFT = 1024
MEL_BINS, MEL_LOW_HZ, MEL_HIGH_HZ = 40, 20.0, 4000.0
NUM_MFCC = 10
LOG_OFFSET = 1e-6
FRAMES = 1 + (CLIP - WINDOW) // STRIDE       # 49
VIEWS = {"speechcommands": (1, FRAMES, NUM_MFCC), "speechcommands_1d": (NUM_MFCC, FRAMES)}


# ---- WAV --------------------------------------------------------------------------
def read_wav(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit PCM WAV as float32 in [-1, 1)."""
    from scipy.io import wavfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rate, data = wavfile.read(path)
        except FileNotFoundError:
            raise UserError(f"{path} does not exist.") from None
        except Exception as e:  # noqa: BLE001 - scipy raises assorted types on bad headers
            # (ValueError, struct.error, even UnboundLocalError when there is no data chunk)
            why = str(e).splitlines()[0].split(". ")[0].rstrip(". ") if str(e) else ""
            if not isinstance(e, (ValueError, struct.error, EOFError)) or not why:
                why = "malformed header or no data chunk"       # scipy's own message is an internal one
            raise UserError(f"{path} is not a valid WAV file ({why}).") from None
    if any("EOF" in str(w.message) for w in caught):
        raise UserError(f"{path} is a truncated WAV file (its data ends before the size its header gives).")
    if rate != SAMPLE_RATE:
        raise UserError(f"{path} is sampled at {rate} Hz; Speech Commands clips must be {SAMPLE_RATE} Hz.")
    if data.ndim != 1:
        raise UserError(f"{path} has {data.shape[1]} channels; Speech Commands clips must be mono.")
    if data.dtype != np.int16:
        raise UserError(f"{path} holds {data.dtype} samples; Speech Commands clips must be 16-bit PCM.")
    return data.astype(np.float32) / np.float32(32768.0)


def fit_clip(signal: np.ndarray) -> np.ndarray:
    """Zero-pad or trim at the end to exactly 1 s."""
    out = np.zeros(CLIP, dtype=np.float32)
    n = min(len(signal), CLIP)
    out[:n] = signal[:n]
    return out


# ---- MFCC front end -------------------------------------------------------------------
@lru_cache(maxsize=1)
def _front_end_constants() -> tuple[np.ndarray, np.ndarray]:
    from python_speech_features import get_filterbanks
    from scipy.signal.windows import hann

    fb = get_filterbanks(MEL_BINS, NFFT, SAMPLE_RATE, MEL_LOW_HZ, MEL_HIGH_HZ)
    return hann(WINDOW, sym=False), np.ascontiguousarray(fb.T)


def mfcc(clips: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N, 16000) clips -> (N, 49, 10) MFCCs (float64), ``batch`` clips at a time."""
    from python_speech_features.sigproc import powspec
    from scipy.fft import dct

    clips = np.asarray(clips, dtype=np.float64).reshape(-1, CLIP)
    window, fb_t = _front_end_constants()
    out = np.empty((len(clips), FRAMES, NUM_MFCC))
    for i in range(0, len(clips), batch):
        c = clips[i:i + batch]
        frames = np.lib.stride_tricks.sliding_window_view(c, WINDOW, axis=1)[:, ::STRIDE][:, :FRAMES]
        power = powspec((frames * window).reshape(-1, WINDOW), NFFT)
        logmel = np.log(power @ fb_t + LOG_OFFSET)
        out[i:i + batch] = dct(logmel, type=2, axis=1, norm="ortho")[:, :NUM_MFCC].reshape(len(c), FRAMES, NUM_MFCC)
    return out


# ---- split lists -------------------------------------------------------------------------
def _read_list(path: Path, root: Path) -> set[str]:
    """The ``<word>/<id>.wav`` entries of a split list, each checked to exist."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file of <word>/<file>.wav lines.") from None
    entries = set()
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("/")
        if len(parts) != 2 or not parts[1].endswith(".wav") or not all(parts):
            raise UserError(f"line {i} of {path} is {line[:60]!r}, not a <word>/<file>.wav entry.")
        if not (root / line).is_file():
            raise UserError(f"{path} lists {line}, which is not under {root}.")
        entries.add(line)
    return entries


def speech_commands_root(name: str, data_dir: str | Path | None) -> Path:
    """The extracted folder, checked to hold the list file and the ten word folders."""
    root = data_root(name, data_dir, SUBDIRS, "testing_list.txt", "Speech Commands v0.02 WAV folders")
    for w in WORDS:
        if not (root / w).is_dir():
            raise UserError(f"the word folder {w!r} of Speech Commands was not found in {root}.")
    return root


def _split_items(root: Path) -> dict[str, list[tuple[str, int]]]:
    """{'train'/'test': [(relative path, label)]} for the ten words and the
    unknown pool (label UNKNOWN), before any sampling."""
    test = _read_list(root / "testing_list.txt", root)
    val_list = root / "validation_list.txt"
    if val_list.exists():
        _read_list(val_list, root)        # validated; its clips stay in train (module docstring)
    items: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        label = WORDS.index(folder.name) if folder.name in WORDS else UNKNOWN
        for wav in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{wav.name}"
            items["test" if rel in test else "train"].append((rel, label))
    return items


def _noise_clips(root: Path, count: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """``count`` 1 s silence clips: random crops of the background noise at a
    random volume (zeros when there is no noise folder)."""
    noise_dir = root / NOISE_DIR
    noises = [read_wav(p) for p in sorted(noise_dir.glob("*.wav"))] if noise_dir.is_dir() else []
    for _ in range(count):
        if not noises:
            yield np.zeros(CLIP, dtype=np.float32)
            continue
        n = noises[int(rng.integers(len(noises)))]
        start = int(rng.integers(max(len(n) - CLIP, 0) + 1))
        yield fit_clip(n[start:start + CLIP]) * np.float32(rng.uniform(0.0, 1.0))


def _mfcc_stream(clips: Iterable[np.ndarray], count: int, batch: int = 256) -> np.ndarray:
    """MFCCs of ``count`` clips read lazily, ``batch`` at a time: the whole
    dataset's audio (gigabytes) is never in memory at once."""
    out = np.empty((count, FRAMES, NUM_MFCC))
    it = iter(clips)
    for i in range(0, count, batch):
        chunk = [next(it) for _ in range(min(batch, count - i))]
        out[i:i + len(chunk)] = mfcc(np.stack(chunk), batch)
    return out


def _split(root: Path, items: list[tuple[str, int]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    known = [it for it in items if it[1] != UNKNOWN]
    pool = [it for it in items if it[1] == UNKNOWN]
    extra = math.ceil(EXTRA_FRACTION * len(known))
    pick = sorted(rng.choice(len(pool), size=min(extra, len(pool)), replace=False).tolist()) if pool else []
    chosen = known + [pool[i] for i in pick]
    clips = itertools.chain((fit_clip(read_wav(root / rel)) for rel, _ in chosen), _noise_clips(root, extra, rng))
    labels = [lab for _, lab in chosen] + [SILENCE] * extra
    return _mfcc_stream(clips, len(labels)), np.asarray(labels, dtype=np.int64)


def load_speech_commands(name: str, data_dir: str | Path | None) -> Dataset:
    root = speech_commands_root(name, data_dir)
    items = _split_items(root)
    if not any(lab != UNKNOWN for _, lab in items["train"]) or not any(lab != UNKNOWN for _, lab in items["test"]):
        raise UserError(f"Speech Commands under {root} has no keyword clips in its train or its test split.")
    (ftr, ytr), (fte, yte) = _split(root, items["train"], SPLIT_SEED), _split(root, items["test"], SPLIT_SEED + 1)
    xtr, xte = unit_from_zscore(ftr, fte, axes=(0, 1))        # per coefficient
    if name == "speechcommands":
        xtr, xte = xtr[:, None], xte[:, None]
    else:
        xtr, xte = xtr.transpose(0, 2, 1), xte.transpose(0, 2, 1)
    log.info("loaded %s: %d train, %d test clips from %s", name, len(ytr), len(yte), root)
    return Dataset(name, *tensors(xtr, ytr, xte, yte))
