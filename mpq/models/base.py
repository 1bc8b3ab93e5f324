"""The model base class and its plan steps.

Every model is a :class:`QuantModel`: an ordered ``plan`` of steps --
``Layer`` (a quant conv / linear, an optional BatchNorm, then its activation),
pooling, ``FlattenStep``, ``ShuffleStep``, and the two branching steps
``Residual`` (body + shortcut, merged by an add) and ``Branches`` (paths merged
by a channel concatenation), whose paths are plans themselves.  Each step
knows how it runs in torch (``forward``) and how it lowers to the layer IR
(``lower``), side by side; :meth:`QuantModel.lower` is the one walk that the
integer reference, codegen, deploy and the latency model consume.

Tensor codes (docs/ir.md, "Codes of branching models"): every tensor of the
integer model has ONE code -- a width and a scale, owned by one activation
quantiser:

* a MAC layer reads its input at its own quantiser (``act_quant``: qa bits, the
  scheme's); the layer that produces a tensor requantises straight to the code
  of the first quantiser downstream of it (``_first_quant``: through pools,
  flatten and shuffles, into a branch's first path, out of a path to what
  follows the merge);
* a tensor feeding several consumers (the input of a ``Residual`` or
  ``Branches``) takes the code of its *primary* consumer, the first quantiser
  of the body / first path.  Every other consumer layer reads it through a
  :class:`TiedActQuant`: the same scale when its qa equals the primary's width
  (no extra op), else its own scale and width, reached by an explicit
  ``Rescale`` node in the integer graph (in torch: it re-quantises the
  primary's codes, which is what the rescale computes);
* a residual add owns the quantisers of the inputs no one else quantises (the
  body's result, a conv shortcut's result; 8 bits, ``Residual.bits``): the
  ``Add`` op requantises both codes onto the output's code with one shift;
* a concatenation writes every path straight to the code of what follows it
  (a path that ends on another code gets a ``Rescale``).

So the scheme stays one (qa, qw) per MAC layer, in plan order (depth first:
body before shortcut, paths in order), and every scheme is a valid model.

Structure that mirrors the integer deploy semantics:

* max pooling commutes with the monotone quantiser; average pooling quantises
  its input first and rounds its mean half up on that code (the IR op's
  ``run`` on the codes, with a straight-through gradient), as the device does;
* an activation feeding a 1-bit quantiser is dropped (sign activation) while
  fake quant is on; ReLU6 is the requantisation's upper clamp at the code of 6.0;
* the input is centred (``x - input_offset``) before the first quantiser, so a
  1- or 2-bit first layer still sees a signed image;
* the classifier uses one weight scale for all outputs so the integer logits
  (``acc + bias``, out_bits 0) rank the classes as the float logits do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.spec import KernelSpec
from kernels import ir
from kernels.reference import BITS

from ..quant import ActFakeQuant, fake_quant, quantize_codes

Scheme = tuple[tuple[int, int], ...]
ACTS = ("auto", "relu", "relu6", None)


@dataclass(frozen=True)
class QRef:
    """A quantiser of the walk: a quant layer's input quantiser (``layer`` index)
    or a quantiser a step owns (``own``: the model attribute's name)."""

    layer: int | None = None
    own: str | None = None


class _Pass:
    """Marks a step the current tensor passes through on its code (pools, views)."""


PASS = _Pass()


class TiedActQuant(ActFakeQuant):
    """The input quantiser of a layer that reads a branch point's tensor as its
    second consumer: the primary consumer's scale while the widths agree (one
    code, no extra op), its own calibrated scale otherwise."""

    def __init__(self, primary: ActFakeQuant, bits: int = 8, momentum: float = 0.1, policy: str = "mico"):
        super().__init__(bits, momentum, policy)
        object.__setattr__(self, "_primary", primary)     # a reference, not a submodule

    @property
    def primary(self) -> ActFakeQuant:
        return self._primary

    def tied(self) -> bool:
        return self.primary.bits == self.bits

    def scale(self) -> torch.Tensor:
        return self.primary.scale() if self.tied() else super().scale()

    @property
    def unsigned(self) -> bool:
        return self.primary.unsigned if self.tied() else ActFakeQuant.unsigned.fget(self)

    @unsigned.setter
    def unsigned(self, value: bool) -> None:
        self._unsigned = bool(value)


@dataclass
class _Walk:
    """State of one walk over a plan: the model, its quant layers and (when
    lowering) the graph being built, the scheme and the integer parameters."""

    model: "QuantModel"
    layers: list
    i: int = 0                          # kept for compatibility: the layer relu_after() asks about
    graph: ir.Graph | None = None
    scheme: Scheme = ()
    params: list | None = None          # integer_params() per layer (None: structural graph)
    index: dict = field(default_factory=dict)
    suspended: list = field(default_factory=list)       # observers switched off for this forward pass
    unsigned: frozenset = frozenset()   # codes (canonical QRefs) that are unsigned in this lowering
    writers: dict | None = None         # when set: code -> [whether each writer ends in a ReLU]

    def __post_init__(self):
        self.index = {name: k for k, (name, _) in enumerate(self.layers)}

    # ---- quantisers -------------------------------------------------------------------------
    def module(self, q: QRef) -> ActFakeQuant:
        if q.layer is not None:
            return self.layers[q.layer][1].act_quant
        return getattr(self.model, q.own)

    def bits(self, q: QRef) -> int:
        if q.layer is not None and self.scheme:
            return self.scheme[q.layer][0]
        return self.module(q).bits

    def canonical(self, q: QRef | None) -> QRef | None:
        """The quantiser whose code ``q`` reads: a tied layer's primary while the widths agree."""
        while q is not None and q.layer is not None:
            m = self.module(q)
            if not isinstance(m, TiedActQuant):
                break
            p = self.model._quant_ref(m.primary)
            if self.bits(p) != self.bits(q):
                break
            q = p
        return q

    def scale(self, q: QRef) -> float:
        if q.layer is not None and self.params is not None:
            return float(self.params[q.layer]["s_in"])
        return float(self.module(q).scale())

    def quantise(self, q: QRef | None, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the code of ``q`` (no observation: the quantiser's owner observes)."""
        if q is None or not self.module(q).enabled:
            return x
        m = self.module(q)
        return fake_quant(x, m.scale().to(x.dtype), m.bits, m.unsigned)

    def enabled_1bit(self, q: QRef | None) -> bool:
        if q is None:
            return False
        if self.graph is not None:
            return self.bits(q) == 1
        m = self.module(q)
        return m.enabled and m.bits == 1

    def suspend_observer(self, m: ActFakeQuant) -> None:
        """Switch ``m``'s observer off until the end of this forward pass."""
        m.observer_enabled.fill_(0)
        self.suspended.append(m)

    def resume_observers(self) -> None:
        for m in self.suspended:
            m.observer_enabled.fill_(1)
        self.suspended.clear()

    # ---- compatibility --------------------------------------------------------------------------
    def relu_after(self) -> bool:
        """Whether layer ``i`` is followed by its activation (sequential plans)."""
        step, out_q = self.model._layer_contexts(self)[self.i]
        return step.activation(self, out_q) is not None

    # ---- graph building -----------------------------------------------------------------------
    def add(self, op: ir.Op, *inputs: int) -> int:
        return self.graph.add(op, *inputs)

    def note_writer(self, q: QRef | None, relu: bool) -> None:
        """Record an op writing onto the code of ``q`` (signedness analysis)."""
        if self.writers is not None and q is not None:
            self.writers.setdefault(q, []).append(bool(relu))

    def ensure_code(self, v: "_Val", want: QRef) -> "_Val":
        """``v`` read at the code of ``want``: the same node, or a Rescale onto it."""
        if v.code == want:
            return v
        name = f"{self.graph.nodes[v.node].name if v.node >= 0 else 'input'}.to_{self._label(want)}"
        bits = self.bits(want)
        self.note_writer(want, False)
        if self.params is None:
            op = ir.Rescale(name=name, out_bits=bits)
        else:
            op = ir.Rescale.from_scales(name, [self.scale(v.code)], self.scale(want), bits)
        return _Val(self.add(op, v.node), want)

    def _label(self, q: QRef) -> str:
        return self.layers[q.layer][0] if q.layer is not None else q.own


@dataclass(frozen=True)
class _Val:
    """A value while lowering: its node and the quantiser that owns its code."""

    node: int
    code: QRef | None


def _first_quant(w: _Walk, steps: Sequence["Step"], cont) -> tuple[QRef | None, bool]:
    """The first quantiser the current tensor meets in ``steps`` (and whether it
    lies inside them), else ``cont`` -- what follows the sequence (None: logits)."""
    for k, s in enumerate(steps):
        q = s.entry(w, steps[k + 1:], cont)
        if q is not PASS:
            return q, True
    return cont, False


def first_quant(w: _Walk, steps: Sequence["Step"], cont) -> QRef | None:
    return _first_quant(w, steps, cont)[0]


def run_steps(w: _Walk, steps: Sequence["Step"], x: torch.Tensor, code, cont) -> tuple[torch.Tensor, QRef | None]:
    for k, s in enumerate(steps):
        x, code = s.forward(w, x, code, steps[k + 1:], cont)
    return x, code


def lower_steps(w: _Walk, steps: Sequence["Step"], v: _Val, cont) -> _Val:
    for k, s in enumerate(steps):
        v = s.lower(w, v, steps[k + 1:], cont)
    return v


class Step(ABC):
    """One entry of a model's plan: how it runs in torch and how it lowers to the IR.
    The two live side by side so that they cannot drift apart.

    ``forward``/``lower`` get the steps after them (``rest``) and the quantiser
    that takes over after their sequence (``cont``), so a step knows which code
    its output is written in."""

    def entry(self, w: _Walk, rest: Sequence["Step"], cont) -> QRef | None | _Pass:
        """The quantiser of the tensor entering this step, or PASS if the step keeps its code."""
        return PASS

    def children(self) -> Iterator["Step"]:
        return iter(())

    @abstractmethod
    def forward(self, w: _Walk, x: torch.Tensor, code, rest, cont) -> tuple[torch.Tensor, QRef | None]: ...

    @abstractmethod
    def lower(self, w: _Walk, v: _Val, rest, cont) -> _Val: ...


def _act_fn(act: str | None):
    return {"relu": F.relu, "relu6": F.relu6, None: lambda x: x}[act]


def _code_of_six(w: _Walk, q: QRef) -> int:
    """The code of 6.0 at ``q``: exactly the fake quantiser's float32 arithmetic."""
    s = torch.tensor(w.scale(q), dtype=torch.float32)
    return int(quantize_codes(torch.tensor(6.0), s, w.bits(q), q in w.unsigned))


@dataclass(frozen=True)
class Layer(Step):
    """A quant layer (module attribute ``name``: QConv2d / QConv1d / QLinear), an optional
    BatchNorm (folded before deploy), then its activation: ``"auto"`` is ReLU
    unless the layer gives the logits, or ``"relu"``, ``"relu6"``, None."""

    name: str
    bn: str | None = None
    act: str | None = "auto"

    def __post_init__(self):
        if self.act not in ACTS:
            raise ValueError(f"layer {self.name}: activation {self.act!r} is not one of {ACTS}.")

    def entry(self, w, rest, cont):
        return QRef(layer=w.index[self.name])

    def activation(self, w: _Walk, out_q: QRef | None) -> str | None:
        """The activation applied after the layer, given the quantiser of its output."""
        if self.act is None or out_q is None:
            return None
        if w.enabled_1bit(out_q):
            return None                  # sign activation: a ReLU would make every code +1
        return "relu" if self.act == "auto" else self.act

    def forward(self, w, x, code, rest, cont):
        x = getattr(w.model, self.name)(x)
        if self.bn is not None:
            x = getattr(w.model, self.bn)(x)
        out_q = first_quant(w, rest, cont)
        return _act_fn(self.activation(w, out_q))(x), out_q

    def lower(self, w, v, rest, cont):
        i = w.index[self.name]
        m = getattr(w.model, self.name)
        qa, qw = w.scheme[i]
        v = w.ensure_code(v, w.canonical(QRef(layer=i)))
        out_q = w.canonical(first_quant(w, rest, cont))
        out_bits = 0 if out_q is None else w.bits(out_q)
        act = self.activation(w, out_q)
        w.note_writer(out_q, act is not None)
        uns = out_q in w.unsigned
        rq = weight = None
        if w.params is not None:
            p = w.params[i]
            if out_q is None:
                real = p["s_in"] * p["s_w"]
            else:
                real = p["s_in"] * p["s_w"] / w.scale(out_q)
            clip = _code_of_six(w, out_q) if act == "relu6" else None
            rq = ir.Requant.from_scale(p["bias"], real, relu=act is not None, out_bits=out_bits, clip_hi=clip,
                                       unsigned=uns)
            weight = p["weight"]
        ops = m.ir_op(self.name, qa, qw, out_bits, weight, rq, out_signed=not uns)
        node = v.node
        for op in ops if isinstance(ops, (list, tuple)) else [ops]:
            node = w.add(op, node)
        return _Val(node, out_q)


class _CodeStep(Step):
    """A step that keeps the code of its input: pools, views, shuffles."""

    @abstractmethod
    def op(self, w: _Walk, x_ndim: int) -> ir.Op:
        """The IR op this step lowers to."""

    def lower(self, w, v, rest, cont):
        return _Val(w.add(self.op(w, len(w.graph.type_of(v.node).shape))), v.code)


def _rounded_pool(w: _Walk, op: ir.Op, x: torch.Tensor, pooled: torch.Tensor, code) -> torch.Tensor:
    """Average pooling as the device does it: the mean of the input's codes rounded
    half up on that code (``op.run``), with the float pool's gradient.

    The code's quantiser observes the tensor the device quantises -- the pool's
    input -- and skips its own observation of the pooled tensor in this forward
    pass (calibrating on pooled values would clip the wider input, and
    quantising before observing would freeze the scale at its first value)."""
    if code is None:
        return pooled
    m = w.module(code)
    if w.model.training and bool(m.observer_enabled[0]) and m.lsq_scale is None:
        m.observe(x)
        w.suspend_observer(m)
    if not m.enabled:
        return pooled
    s = m.scale().to(x.dtype)
    codes = torch.round(fake_quant(x, s.detach(), m.bits, m.unsigned).detach() / s.detach())
    y = torch.from_numpy(op.run([codes.to(torch.int64).numpy()]).astype(np.float32)).to(x.dtype) * s
    return pooled + (y.reshape(pooled.shape) - pooled).detach()


@dataclass(frozen=True)
class PoolStep(_CodeStep):
    """Max / average pooling, square window, zero padding (1-D tensors: along L)."""

    kind: str   # 'max' | 'avg'
    ks: int
    stride: int
    pad: int = 0

    def op(self, w, x_ndim):
        return ir.Pool(mode=self.kind, ks=self.ks, stride=self.stride, pad=self.pad)

    def forward(self, w, x, code, rest, cont):
        one_d = x.dim() == 3
        if self.kind == "max":
            f = F.max_pool1d if one_d else F.max_pool2d
            return f(x, self.ks, self.stride, self.pad), code
        f = F.avg_pool1d if one_d else F.avg_pool2d
        y = f(x, self.ks, self.stride, self.pad, count_include_pad=True)
        return _rounded_pool(w, self.op(w, x.dim() - 1), x, y, code), code


@dataclass(frozen=True)
class AdaptivePoolStep(_CodeStep):
    """Adaptive average pooling to ``out`` ((1, 1): global; (1,) for 1-D tensors)."""

    out: tuple[int, ...] = (1, 1)

    def op(self, w, x_ndim):
        return ir.AdaptiveAvgPool(out=self.out)

    def forward(self, w, x, code, rest, cont):
        f = F.adaptive_avg_pool1d if x.dim() == 3 else F.adaptive_avg_pool2d
        y = f(x, self.out if x.dim() == 4 else self.out[0])
        return _rounded_pool(w, self.op(w, x.dim() - 1), x, y, code), code


@dataclass(frozen=True)
class FlattenStep(_CodeStep):
    def op(self, w, x_ndim):
        return ir.Flatten()

    def forward(self, w, x, code, rest, cont):
        return x.flatten(1), code


@dataclass(frozen=True)
class ShuffleStep(_CodeStep):
    """ShuffleNet's channel shuffle of ``groups`` groups."""

    groups: int

    def op(self, w, x_ndim):
        return ir.ChannelShuffle(groups=self.groups)

    def forward(self, w, x, code, rest, cont):
        n, c = x.shape[:2]
        return x.reshape(n, self.groups, c // self.groups, *x.shape[2:]).transpose(1, 2).reshape(x.shape), code


@dataclass(frozen=True)
class Residual(Step):
    """``act(body(x) + shortcut(x))``: the input feeds the body (its primary consumer)
    and the shortcut (empty: identity).  The add owns an input quantiser for the
    body's result (model attribute ``<name>_q1``) and, when the shortcut has
    layers, one for its result (``<name>_q2``); create them with
    :meth:`QuantModel.residual`."""

    name: str
    body: tuple
    shortcut: tuple = ()
    act: str | None = "relu"

    @property
    def q_body(self) -> QRef:
        return QRef(own=f"{self.name}_q1")

    @property
    def q_short(self) -> QRef | None:
        return QRef(own=f"{self.name}_q2") if any(True for _ in _layers(self.shortcut)) else None

    def children(self):
        yield from self.body
        yield from self.shortcut

    def entry(self, w, rest, cont):
        return first_quant(w, self.body, self.q_body)

    def _act(self, w, out_q):
        return None if self.act is None or w.enabled_1bit(out_q) else self.act

    def forward(self, w, x, code, rest, cont):
        out_q = first_quant(w, rest, cont)
        y1, _ = run_steps(w, self.body, x, code, self.q_body)
        xq = w.quantise(code, x)                      # after the body observed it
        y2, c2 = run_steps(w, self.shortcut, xq, code, self.q_short)
        y1 = w.module(self.q_body)(y1)
        if self.q_short is not None:
            y2 = w.module(self.q_short)(y2)
        return _act_fn(self._act(w, out_q))(y1 + y2), out_q

    def lower(self, w, v, rest, cont):
        out_q = w.canonical(first_quant(w, rest, cont))
        if out_q is None:
            raise UserError(f"residual block {self.name} cannot give the model's logits; end with a layer.")
        v1 = w.ensure_code(lower_steps(w, self.body, v, self.q_body), self.q_body)
        v2 = lower_steps(w, self.shortcut, v, self.q_short)
        if self.q_short is not None:
            v2 = w.ensure_code(v2, self.q_short)
        act, bits = self._act(w, out_q), w.bits(out_q)
        w.note_writer(out_q, False)
        if w.params is None:
            op = ir.Add(name=self.name, out_bits=bits)
        else:
            clip = _code_of_six(w, out_q) if act == "relu6" else None
            op = ir.Add.from_scales(self.name, [w.scale(v1.code), w.scale(v2.code)], w.scale(out_q), bits,
                                    relu=act is not None, clip_hi=clip)
        return _Val(w.add(op, v1.node, v2.node), out_q)


@dataclass(frozen=True)
class Branches(Step):
    """Paths from one input, concatenated along the channels (Inception, fire
    modules, ShuffleNet's downsampling unit).  The first path is the input's
    primary consumer; every path ends on the code of what follows."""

    name: str
    paths: tuple

    def children(self):
        for p in self.paths:
            yield from p

    def entry(self, w, rest, cont):
        return first_quant(w, self.paths[0], first_quant(w, rest, cont))

    def forward(self, w, x, code, rest, cont):
        out_q = first_quant(w, rest, cont)
        y0, _ = run_steps(w, self.paths[0], x, code, out_q)
        xq = w.quantise(code, x)
        ys = [y0] + [run_steps(w, p, xq, code, out_q)[0] for p in self.paths[1:]]
        return torch.cat(ys, dim=1), out_q

    def lower(self, w, v, rest, cont):
        out_q = w.canonical(first_quant(w, rest, cont))
        vs = [w.ensure_code(lower_steps(w, p, v, out_q), out_q) for p in self.paths]
        return _Val(w.add(ir.Concat(name=self.name, count=len(vs)), *[u.node for u in vs]), out_q)


def _layers(steps: Sequence[Step]) -> Iterator[Layer]:
    """Layer steps in plan order, depth first (the scheme's order)."""
    for s in steps:
        if isinstance(s, Layer):
            yield s
        else:
            yield from _layers(list(s.children()))


class QuantModel(nn.Module):
    """Base class: subclasses set ``input_shape`` ((C, H, W), or (C, L) for 1-D
    models), the plan (``set_plan``, or ``plan = [...]`` for plans without
    branches) and the layer/BN modules as attributes named in the plan."""

    input_shape: tuple[int, ...]
    plan: list
    input_offset: float = 0.5
    num_classes: int = 10
    arch: str = "?"

    # ---- structure ---------------------------------------------------------
    def set_plan(self, plan: Sequence[Step]) -> None:
        """Set the plan and tie the input quantisers of every branch point's
        secondary consumer layers to its primary (:class:`TiedActQuant`)."""
        self.plan = list(plan)
        w = _Walk(self, self.quant_layers())
        for i, primary in self._branch_ties(w, self.plan, None).items():
            m = w.layers[i][1]
            if not isinstance(m.act_quant, TiedActQuant):
                old = m.act_quant
                m.act_quant = TiedActQuant(w.module(primary), old.bits, old.momentum, old.policy)

    def _branch_ties(self, w: _Walk, steps, cont) -> dict[int, QRef]:
        ties: dict[int, QRef] = {}
        for k, s in enumerate(steps):
            rest = steps[k + 1:]
            if isinstance(s, Residual):
                paths = [(s.body, s.q_body), (s.shortcut, s.q_short)]
            elif isinstance(s, Branches):
                after = first_quant(w, rest, cont)
                paths = [(p, after) for p in s.paths]
            else:
                continue
            primary = first_quant(w, paths[0][0], paths[0][1])
            for p, c in paths[1:]:
                q, inside = _first_quant(w, p, c)
                if inside and q is not None and q.layer is not None and q != primary:
                    ties[q.layer] = primary
            for p, c in paths:
                ties.update(self._branch_ties(w, list(p), c))
        return ties

    def _quant_ref(self, m: ActFakeQuant) -> QRef:
        for i, (_, layer) in enumerate(self.quant_layers()):
            if layer.act_quant is m:
                return QRef(layer=i)
        for name, mod in self.named_children():
            if mod is m:
                return QRef(own=name)
        raise ValueError("the tied quantiser's primary is not part of the model")

    def residual(self, name: str, body: Sequence[Step], shortcut: Sequence[Step] = (), act: str | None = "relu",
                 bits: int = 8) -> Residual:
        """A Residual step and the add's input quantisers (``bits`` wide, 8 by default:
        the residual sum is formed at 8 bits whatever the scheme)."""
        step = Residual(name, tuple(body), tuple(shortcut), act)
        setattr(self, f"{name}_q1", ActFakeQuant(bits))
        if step.q_short is not None:
            setattr(self, f"{name}_q2", ActFakeQuant(bits))
        return step

    def layer_steps(self) -> list[Layer]:
        return list(_layers(self.plan))

    @property
    def layer_names(self) -> list[str]:
        return [s.name for s in _layers(self.plan)]

    def quant_layers(self) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.layer_names]

    def _layer_contexts(self, w: _Walk) -> list[tuple[Layer, QRef | None]]:
        """(step, quantiser of its output) per quant layer."""
        out: list[tuple[Layer, QRef | None]] = []

        def visit(steps, cont):
            for k, s in enumerate(steps):
                rest = steps[k + 1:]
                if isinstance(s, Layer):
                    out.append((s, first_quant(w, rest, cont)))
                elif isinstance(s, Residual):
                    visit(list(s.body), s.q_body)
                    visit(list(s.shortcut), s.q_short)
                elif isinstance(s, Branches):
                    after = first_quant(w, rest, cont)
                    for p in s.paths:
                        visit(list(p), after)

        visit(self.plan, None)
        return out

    # ---- bit-widths ----------------------------------------------------------
    @property
    def scheme(self) -> Scheme:
        return tuple((m.qa, m.qw) for _, m in self.quant_layers())

    def set_scheme(self, scheme: Sequence[Sequence[int]]) -> None:
        layers = self.quant_layers()
        scheme = normalize_scheme(scheme, len(layers))
        for (_, m), (qa, qw) in zip(layers, scheme):
            m.set_bits(qa, qw)
        self.sync_signedness()

    # ---- signedness of activation codes -------------------------------------------------------
    def unsigned_codes(self, scheme: Sequence[Sequence[int]] | None = None) -> frozenset:
        """The codes (canonical QRefs of layer input quantisers) that are unsigned under a
        scheme: every op writing the tensor is a quant layer followed by its ReLU/ReLU6
        (pools, flattens and shuffles pass the code on) and the width is 2 or 4 bits.
        The model input, residual adds and rescaled codes stay signed."""
        layers = self.quant_layers()
        scheme = self.scheme if scheme is None else normalize_scheme(scheme, len(layers))
        w = _Walk(self, layers, scheme=scheme, writers={})
        self._lower_walk(w)
        return frozenset(q for q, oks in w.writers.items()
                         if all(oks) and q.layer is not None and w.bits(q) in ir.UNSIGNED_BITS)

    def sync_signedness(self) -> None:
        """Set every activation quantiser's ``unsigned`` from the current scheme (cached)."""
        layers = self.quant_layers()
        key = tuple(m.act_quant.bits for _, m in layers)
        if getattr(self, "_signed_key", None) == key:
            return
        codes = self.unsigned_codes()
        for i, (_, m) in enumerate(layers):
            m.act_quant.unsigned = QRef(layer=i) in codes
        object.__setattr__(self, "_signed_key", key)

    # ---- forward ---------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sync_signedness()
        w = _Walk(self, self.quant_layers())
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            x = x.reshape(x.shape[0], *self.input_shape)     # the same samples in the model's layout (1-D models)
        x = x - self.input_offset
        try:
            y, _ = run_steps(w, self.plan, x, first_quant(w, self.plan, None), None)
        finally:
            w.resume_observers()
        return y

    # ---- the layer IR ------------------------------------------------------------
    def lower(self, scheme: Sequence[Sequence[int]] | None = None, params: list | None = None) -> ir.Graph:
        """The model as an IR graph: structural (shapes and bits only) without
        ``params``, or complete with every layer's ``integer_params()``."""
        layers = self.quant_layers()
        scheme = self.scheme if scheme is None else normalize_scheme(scheme, len(layers))
        w = _Walk(self, layers, scheme=scheme, params=params, unsigned=self.unsigned_codes(scheme))
        return self._lower_walk(w)

    def _lower_walk(self, w: _Walk) -> ir.Graph:
        code = w.canonical(first_quant(w, self.plan, None))
        if code != QRef(layer=0):
            raise UserError(f"model {self.arch}: the plan must start with a quant layer (it quantises the input).")
        w.note_writer(code, False)
        w.graph = ir.Graph(ir.TensorType(tuple(self.input_shape), w.bits(code)))
        lower_steps(w, self.plan, _Val(ir.INPUT, code), None)
        return w.graph

    def layer_specs(self, batch: int = 1, scheme: Sequence[Sequence[int]] | None = None) -> list[KernelSpec]:
        """KernelSpecs of the quant layers for ``batch`` and a scheme (default:
        the model's current bit-widths)."""
        return self.lower(scheme).specs(batch)


def normalize_scheme(scheme: Sequence[Sequence[int]], n_layers: int) -> Scheme:
    """Validate a scheme (one (qa, qw) per layer, bits in {1,2,4,8})."""
    out = tuple((int(a), int(w)) for a, w in scheme)
    if len(out) != n_layers:
        raise UserError(f"the scheme has {len(out)} (qa, qw) pairs but the model has {n_layers} quantisable layers.")
    for a, w in out:
        if a not in BITS or w not in BITS:
            raise UserError(f"bit-width pair ({a},{w}) is not supported; use bits from 1, 2, 4, 8.")
    return out
