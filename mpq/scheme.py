"""scheme.json (+ its weights file): what ``mico search`` writes and deploy reads.

Format (``"format": "mico-scheme", "version": 1``)::

    model, dataset, data_dir, seed, scale_policy
    layers:  [{name, kind ('conv2d'|'linear'), qa, qw, spec (KernelSpec dict, N=batch)}]
    weights: file name of the state dict, relative to the scheme file (<stem>.pt)
    input:   {shape [C,H,W], offset, bits, scale}
    accuracy: {float, fakequant, integer}   (test split)
    predicted_latency: {unit, total, per_layer}
    budget: {text, value, unit}
    bops, size_bits, searcher, evaluations, pareto [{bits, accuracy, latency}], proxy

The weights are the state dict of the BN-folded quant model (fake quant on,
observers included); always loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from harness.errors import UserError

from .fold import fold_model
from .integer import IntegerModel, build_integer_model
from .models import QuantModel, get_model
from .quant import enable_fake_quant, set_scale_policy

FORMAT = "mico-scheme"
VERSION = 1


def weights_path_for(scheme_path: str | Path) -> Path:
    p = Path(scheme_path)
    return p.with_name(p.stem + ".pt")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_scheme(path: str | Path, doc: dict, model: QuantModel) -> Path:
    """Write ``model``'s state dict to ``<stem>.pt`` and ``doc`` (with ``format``,
    ``version`` and ``weights`` filled in) to ``path``; returns the JSON path."""
    path = Path(path)
    wpath = weights_path_for(path)
    doc = dict(doc)
    doc.update(format=FORMAT, version=VERSION, weights=wpath.name)
    try:
        import io

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        _atomic_write(wpath, buf.getvalue())
        _atomic_write(path, (json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n").encode())
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}.") from None
    return path


def read_scheme(path: str | Path) -> dict:
    """The validated scheme document."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"scheme file {path} does not exist; create it with `mico search -o {path}`.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read scheme file {path} ({getattr(e, 'strerror', None) or e}).") from None
    except json.JSONDecodeError:
        raise UserError(f"{path} is not a mico scheme file (it is not valid JSON).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path} is not a mico scheme file (its 'format' is not {FORMAT!r}).")
    if doc.get("version") != VERSION:
        raise UserError(f"{path} is a mico scheme of version {doc.get('version')!r}; this mico-hil reads version {VERSION}.")
    for key in ("model", "dataset", "layers", "weights"):
        if key not in doc:
            raise UserError(f"scheme file {path} lacks the field {key!r}; rerun `mico search`.")
    return doc


def scheme_bits(doc: dict) -> tuple[tuple[int, int], ...]:
    return tuple((int(l["qa"]), int(l["qw"])) for l in doc["layers"])


def model_from_scheme(doc: dict, weights: str | Path) -> QuantModel:
    """The BN-folded quant model of a scheme with its weights, in eval mode."""
    model = get_model(doc["model"], doc["dataset"])
    fold_model(model, structure_only=True)
    names = [l["name"] for l in doc["layers"]]
    if names != model.layer_names:
        raise UserError(f"the scheme's layers {names} do not match model {doc['model']!r} ({model.layer_names}).")
    model.set_scheme(scheme_bits(doc))
    set_scale_policy(model, doc.get("scale_policy", "mico"))
    enable_fake_quant(model, True)
    weights = Path(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"scheme weights {weights} do not exist; keep them next to the scheme file.") from None
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file
        raise UserError(f"cannot load scheme weights {weights} ({type(e).__name__}).") from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"scheme weights {weights} do not fit model {doc['model']!r}: {str(e).splitlines()[0]}") from None
    model.eval()
    return model


def integer_model_from_scheme(path_or_doc: str | Path | dict, weights: str | Path | None = None) -> IntegerModel:
    """Build the IntegerModel of a scheme file (or of a loaded doc + weights path)."""
    if isinstance(path_or_doc, dict):
        if weights is None:
            raise ValueError("weights path required with a scheme dict")
        return build_integer_model(model_from_scheme(path_or_doc, weights))
    return load_scheme(path_or_doc)[1]


def load_scheme(path: str | Path) -> tuple[QuantModel, IntegerModel, dict]:
    """(quant model in eval mode with loaded weights, IntegerModel, scheme dict)."""
    path = Path(path)
    doc = read_scheme(path)
    model = model_from_scheme(doc, path.parent / doc["weights"])
    return model, build_integer_model(model), doc
