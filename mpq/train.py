"""Float training, activation calibration (PTQ) and QAT fine-tuning.

Everything is deterministic for a given seed on a given machine: shuffling
uses its own ``torch.Generator`` and parameter init happens under
``torch.manual_seed``.
"""

from __future__ import annotations

import copy
import logging
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fold import fold_model, is_folded
from .models import QuantModel
from .quant import enable_fake_quant, enable_observer, reset_observers
from .util import torch_threads

log = logging.getLogger(__name__)

#: default float-training epochs per dataset (digits is tiny, MNIST is large)
DEFAULT_EPOCHS = {"digits": 30, "mnist": 3, "fashionmnist": 4}


def set_seed(seed: int) -> None:
    torch.manual_seed(int(seed))


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
                    generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        j = order[i:i + batch_size]
        yield x[j], y[j]


def _progress(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, leave=False, disable=(None if enabled else True))


def _bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _train_loop(model: QuantModel, x, y, steps_or_epochs: tuple[int | None, int | None], lr: float,
                batch_size: int, seed: int, weight_decay: float, desc: str, progress: bool,
                freeze_bn: bool = False) -> list[float]:
    epochs, steps = steps_or_epochs
    if len(x) == 0:
        raise ValueError("no training data")
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = (len(x) + batch_size - 1) // batch_size
    total = steps if steps is not None else epochs * per_epoch
    if epochs is not None and steps is None:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    else:
        sched = None
    losses: list[float] = []
    bar = _progress(total, desc, progress)
    with torch_threads():
        _run_steps(model, x, y, batch_size, gen, opt, sched, total, losses, bar, freeze_bn)
    if bar is not None:
        bar.close()
    model.eval()
    return losses


def _run_steps(model, x, y, batch_size, gen, opt, sched, total, losses, bar, freeze_bn) -> None:
    model.train()
    if freeze_bn:
        _bn_eval(model)
    done = 0
    while done < total:
        for xb, yb in iterate_batches(x, y, batch_size, True, gen):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
            done += 1
            if bar is not None:
                bar.update(1)
            if done >= total:
                break


def train_float(model: QuantModel, x: torch.Tensor, y: torch.Tensor, epochs: int = 30, lr: float = 3e-3,
                batch_size: int = 32, seed: int = 0, weight_decay: float = 1e-4,
                progress: bool = False) -> list[float]:
    """Adam + cosine schedule on the float model (fake quant off). Returns losses."""
    enable_fake_quant(model, False)
    enable_observer(model, False)
    try:
        return _train_loop(model, x, y, (epochs, None), lr, batch_size, seed, weight_decay,
                           "float training", progress)
    finally:
        enable_observer(model, True)


@torch.no_grad()
def calibrate(model: QuantModel, x: torch.Tensor, batches: int = 4, batch_size: int = 128,
              seed: int = 0) -> None:
    """Reset and fill the activation observers from ``batches`` batches of ``x``
    with fake quant on (each layer sees its quantised predecessors); weights
    and BN statistics are untouched.  Leaves the model in eval mode."""
    reset_observers(model)
    enable_fake_quant(model, True)
    enable_observer(model, True)
    gen = torch.Generator().manual_seed(int(seed))
    model.train()
    _bn_eval(model)
    with torch_threads():
        for i, (xb, _) in enumerate(iterate_batches(x, x.new_zeros(len(x)), batch_size, True, gen)):
            if i >= batches:
                break
            model(xb)
    model.eval()


def quantize(float_model: QuantModel, scheme: Sequence[Sequence[int]], x_calib: torch.Tensor,
             calib_batches: int = 4, batch_size: int = 128, seed: int = 0) -> QuantModel:
    """PTQ: a BN-folded copy of ``float_model`` with ``scheme`` set, fake quant
    on and activation scales calibrated.  ``float_model`` is not modified."""
    m = copy.deepcopy(float_model)
    if not is_folded(m):
        m.eval()
        fold_model(m)
    m.set_scheme(scheme)
    calibrate(m, x_calib, calib_batches, batch_size, seed)
    return m


#: QAT defaults of the chosen scheme (``mico search``): long enough to converge on
#: digits, stopped early when the validation accuracy stalls
QAT_EPOCHS, QAT_PATIENCE = 30, 6
#: the learned scales move this much slower than the weights (Adam normalises steps,
#: and a scale step of lr would be a large relative change)
LSQ_LR_FACTOR = 0.1


def start_lsq(model: QuantModel) -> None:
    """Learn every quantiser's scale from now on (LSQ), starting at the calibrated ones:
    activation scales (one per code: a tied quantiser shares its primary's) and the
    per-channel weight scales."""
    from .models.base import TiedActQuant
    from .quant import ActFakeQuant, WeightFakeQuant

    for m in model.modules():
        if isinstance(m, TiedActQuant) and m.tied():
            continue
        if isinstance(m, ActFakeQuant):
            m.start_lsq()
    for _, layer in model.quant_layers():
        wq = layer.weight_quant
        if isinstance(wq, WeightFakeQuant):
            wq.start_lsq(layer.weight)


def lsq_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if n.endswith("lsq_scale")]


def prepare_lsq_state(model: nn.Module, state: dict) -> None:
    """Create the learned-scale parameters a saved state holds, so that it loads strictly."""
    mods = dict(model.named_modules())
    for key, value in state.items():
        if key.endswith(".lsq_scale"):
            m = mods.get(key[:-len(".lsq_scale")])
            if m is not None and getattr(m, "lsq_scale", "absent") is None:
                m.lsq_scale = nn.Parameter(torch.empty_like(value))


def qat(model: QuantModel, x: torch.Tensor, y: torch.Tensor, epochs: int | None = 3, steps: int | None = None,
        lr: float = 1e-3, batch_size: int = 64, seed: int = 0, progress: bool = False, lsq: bool = False,
        x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
        patience: int = QAT_PATIENCE) -> list[float]:
    """Quantisation-aware fine-tuning in place (the model should be calibrated,
    e.g. by :func:`quantize`): Adam, for ``epochs`` epochs (cosine schedule) or a
    fixed number of ``steps`` (constant lr).  Without ``lsq`` the activation
    observers keep updating (EMA) in training mode and freeze in eval mode;
    with ``lsq`` every scale is a learned parameter (:func:`start_lsq`).

    With a validation split (``x_val``, ``y_val``; epochs mode) the model is
    scored after every epoch, training stops after ``patience`` epochs without
    improvement, and the best epoch's state is restored (early stopping: the
    test split is never looked at)."""
    enable_fake_quant(model, True)
    enable_observer(model, True)
    if lsq:
        start_lsq(model)
    scales = lsq_parameters(model)
    ids = {id(p) for p in scales}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": lr}]
    if scales:
        groups.append({"params": scales, "lr": lr * LSQ_LR_FACTOR})
    if len(x) == 0:
        raise ValueError("no training data")
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(groups)
    per_epoch = (len(x) + batch_size - 1) // batch_size
    losses: list[float] = []
    if steps is not None or x_val is None or epochs is None:
        total = steps if steps is not None else epochs * per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1)) if steps is None else None
        bar = _progress(total, "QAT", progress)
        with torch_threads():
            _run_steps(model, x, y, batch_size, gen, opt, sched, total, losses, bar, True)
        if bar is not None:
            bar.close()
        model.eval()
        return losses
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * per_epoch, 1))
    best, best_state, stale = accuracy(model, x_val, y_val), copy.deepcopy(model.state_dict()), 0
    bar = _progress(epochs * per_epoch, "QAT", progress)
    for _ in range(epochs):
        with torch_threads():
            _run_steps(model, x, y, batch_size, gen, opt, sched, per_epoch, losses, bar, True)
        acc = accuracy(model, x_val, y_val)
        if acc > best:
            best, best_state, stale = acc, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Top-1 accuracy in eval mode (float or fake quant, whatever is enabled)."""
    was = model.training
    model.eval()
    correct = 0
    with torch_threads():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(len(x), 1)
