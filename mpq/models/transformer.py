"""Transformer plan steps and the two small transformers of the zoo (``vit_tiny``, ``kws_transformer``).

An :class:`EncoderBlock` is one plan step (pre-norm: ``x + proj(attn(LN(x)))``, then
``x + fc2(GELU(fc1(LN(x))))``) whose six token-wise linear layers (q, k, v, proj,
fc1, fc2) are the scheme's quant layers.  Everything else has fixed codes the block
owns (8 bits): its input, q/k/v, the scores, the projection and fc2 results, the
GELU input and the first residual sum.  The softmax writes probabilities on the
code 1/127.  LayerNorm, GELU and the attention matmul after the softmax write
straight onto the code of the quant layer that reads them.

Torch and integer model round the same integers (docs/ir.md): while fake quant is on,
every non-MAC op of a block computes its float value for the gradient and takes the
IR op's ``run`` on the codes as its value (straight through), so the fake-quant
model's codes are the integer model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kernels import ir

from ..quant import ActFakeQuant, QConv2d, QLinear, quantize_codes
from .base import PASS, FlattenStep, Layer, QRef, QuantModel, Step, TiedActQuant, _rounded_pool, _Val, first_quant
from .blocks import image_shape, sequence_shape
from .layers import QConv1d
from .transformer_ops import fq_add, fq_attn_av, fq_attn_qk, fq_gelu, fq_layernorm, fq_softmax


class QTokenLinear(QLinear):
    """A quant linear layer applied to every token of (N, T, K): lowers to ``ir.TokenLinear``."""

    @torch.no_grad()
    def _exact_forward(self, xq: torch.Tensor) -> torch.Tensor:
        """The exact integer accumulator (float64 on codes) times the scales; features last."""
        s_in = self.act_quant.scale().double()
        s_w = self.weight_scales().double()
        ca = torch.round(xq.double() / s_in)
        cw = quantize_codes(self.weight.detach(), self.weight_scales().view(-1, 1), self.qw).double()
        acc = F.linear(ca, cw)
        if self.bias is not None:
            acc = acc + self._bias_int(self.act_quant.scale(), self.weight_scales()).double()
        return acc * (s_in * s_w)

    def ir_op(self, name, qa, qw, out_bits, weight=None, rq=None, out_signed=True):
        return ir.TokenLinear(name=name, qa=qa, qw=qw, out_bits=out_bits, weight=weight, rq=rq,
                              out_features=self.out_features, out_signed=out_signed)


@dataclass(frozen=True)
class TokensStep(Step):
    """(D, H, W) or (D, L) feature maps -> (T, D) tokens (a view and a transpose; codes kept)."""

    def forward(self, w, x, code, rest, cont):
        return x.flatten(2).transpose(1, 2), code

    def lower(self, w, v, rest, cont):
        t = w.graph.type_of(v.node)
        node = w.add(ir.Reshape(shape=(t.shape[0], -1)), v.node)
        return _Val(w.add(ir.Transpose(), node), v.code)

    def entry(self, w, rest, cont):
        return PASS


@dataclass(frozen=True)
class TokenPoolStep(Step):
    """Mean over the tokens: (T, D) -> (D,), rounded half up on the input's code."""

    def forward(self, w, x, code, rest, cont):
        xt = x.transpose(1, 2)
        y = _rounded_pool(w, ir.AdaptiveAvgPool(out=(1,)), xt, xt.mean(-1, keepdim=True), code)
        return y.flatten(1), code

    def lower(self, w, v, rest, cont):
        node = w.add(ir.Transpose(), v.node)
        node = w.add(ir.AdaptiveAvgPool(out=(1,)), node)
        return _Val(w.add(ir.Flatten(), node), v.code)

    def entry(self, w, rest, cont):
        return PASS


@dataclass(frozen=True)
class EncoderBlock(Step):
    """A pre-norm transformer encoder block; create it with :func:`encoder_block`."""

    name: str
    heads: int

    # quant layers (module attributes <name>_<x>) in scheme order
    LAYERS = ("q", "k", "v", "proj", "fc1", "fc2")
    OWN = ("in", "qq", "qk", "qv", "s", "o", "r1", "g", "f")

    def layer(self, x: str) -> Layer:
        return Layer(f"{self.name}_{x}", None, None)

    def own(self, x: str) -> QRef:
        return QRef(own=f"{self.name}_{x}")

    def lref(self, w, x: str) -> QRef:
        return QRef(layer=w.index[f"{self.name}_{x}"])

    def children(self):
        for x in self.LAYERS:
            yield self.layer(x)

    def entry(self, w, rest, cont):
        return self.own("in")

    def _mod(self, w, x):
        return getattr(w.model, f"{self.name}_{x}")

    # ---- torch (mpq/models/transformer_ops.py: float gradient, the IR ops' integers as values) ------
    def forward(self, w, x, code, rest, cont):
        out_q = first_quant(w, rest, cont)
        m = lambda k: getattr(w.model, f"{self.name}_{k}")          # noqa: E731
        sus = w.suspend_observer
        q_in = m("in")
        xq = q_in(x)
        qa = m("q").act_quant
        h = fq_layernorm(xq, q_in, m("ln1"), qa, sus)
        hq = qa(h)                            # k and v read it on q's code (tied quantisers)
        q = m("qq")(m("q")(hq))
        k = m("qk")(m("k")(hq))
        v = m("qv")(m("v")(hq))
        s = m("s")(fq_attn_qk(q, m("qq"), k, m("qk"), self.heads, m("s"), sus))
        p = fq_softmax(s, m("s"))
        a = fq_attn_av(p, v, m("qv"), self.heads, m("proj").act_quant, sus)
        o = m("o")(m("proj")(a))
        r1 = m("r1")(fq_add(xq, q_in, o, m("o"), m("r1"), sus))
        h2 = fq_layernorm(r1, m("r1"), m("ln2"), m("fc1").act_quant, sus)
        g = m("g")(m("fc1")(h2))
        gg = fq_gelu(g, m("g"), m("fc2").act_quant, sus)
        f = m("f")(m("fc2")(gg))
        if out_q is None:
            return r1 + f, out_q
        return fq_add(r1, m("r1"), f, m("f"), w.module(out_q), sus), out_q

    # ---- the layer IR ---------------------------------------------------------------------------
    def lower(self, w, v, rest, cont):
        out_q = w.canonical(first_quant(w, rest, cont))
        full = w.params is not None
        m = lambda k: getattr(w.model, f"{self.name}_{k}")          # noqa: E731
        sc = lambda q: w.scale(q)                                    # noqa: E731
        q_in = self.own("in")
        x = w.ensure_code(v, q_in)
        n = self.name

        def ln(tag, src, reader):
            code = w.canonical(self.lref(w, reader))
            bits = w.bits(code)
            w.note_writer(code, False)
            mod = m(tag)
            op = (ir.LayerNorm.from_params(f"{n}.{tag}", mod.weight.detach().numpy(), mod.bias.detach().numpy(),
                                           sc(code), bits) if full else ir.LayerNorm(name=f"{n}.{tag}", out_bits=bits))
            return _Val(w.add(op, src.node), code)

        def lin(x_, val, cont_):
            return self.layer(x_).lower(w, val, (), cont_)

        h = ln("ln1", x, "q")
        q = lin("q", h, self.own("qq"))
        k = lin("k", h, self.own("qk"))
        vv = lin("v", h, self.own("qv"))
        H = self.heads
        D = w.graph.type_of(q.node).shape[1]
        dh = D // H
        if full:
            op = ir.AttnMatMul.from_scales(f"{n}.qk", "qk", H, sc(q.code), sc(k.code) / math.sqrt(dh),
                                           sc(self.own("s")), 8)
        else:
            op = ir.AttnMatMul(name=f"{n}.qk", mode="qk", heads=H, out_bits=8)
        s = w.add(op, q.node, k.node)
        sm = ir.Softmax.from_scale(f"{n}.softmax", sc(self.own("s"))) if full else ir.Softmax(name=f"{n}.softmax")
        p = w.add(sm, s)
        pcode = w.canonical(self.lref(w, "proj"))
        w.note_writer(pcode, False)
        if full:
            op = ir.AttnMatMul.from_scales(f"{n}.av", "av", H, 1 / 127, sc(vv.code), sc(pcode), w.bits(pcode))
        else:
            op = ir.AttnMatMul(name=f"{n}.av", mode="av", heads=H, out_bits=w.bits(pcode))
        a = _Val(w.add(op, p, vv.node), pcode)
        o = lin("proj", a, self.own("o"))
        r1q = self.own("r1")
        add1 = (ir.Add.from_scales(f"{n}.add1", [sc(x.code), sc(o.code)], sc(r1q), 8) if full
                else ir.Add(name=f"{n}.add1", out_bits=8))
        r1 = _Val(w.add(add1, x.node, o.node), r1q)
        h2 = ln("ln2", r1, "fc1")
        g = lin("fc1", h2, self.own("g"))
        fcode = w.canonical(self.lref(w, "fc2"))
        w.note_writer(fcode, False)
        gop = (ir.GELU.from_scales(f"{n}.gelu", sc(g.code), sc(fcode), w.bits(fcode)) if full
               else ir.GELU(name=f"{n}.gelu", out_bits=w.bits(fcode)))
        gv = _Val(w.add(gop, g.node), fcode)
        f = lin("fc2", gv, self.own("f"))
        w.note_writer(out_q, False)
        bits = w.bits(out_q)
        add2 = (ir.Add.from_scales(f"{n}.add2", [sc(r1.code), sc(f.code)], sc(out_q), bits) if full
                else ir.Add(name=f"{n}.add2", out_bits=bits))
        return _Val(w.add(add2, r1.node, f.node), out_q)


def encoder_block(model: QuantModel, name: str, dim: int, heads: int, mlp: int) -> EncoderBlock:
    """An EncoderBlock step and its modules (layers, LayerNorms, the 8-bit codes it owns) on ``model``."""
    if dim % heads:
        raise ValueError(f"block {name}: dim {dim} is not divisible by {heads} heads")
    for x, (fin, fout) in zip(EncoderBlock.LAYERS, ((dim, dim),) * 4 + ((dim, mlp), (mlp, dim))):
        setattr(model, f"{name}_{x}", QTokenLinear(fin, fout))
    for x in EncoderBlock.OWN:
        setattr(model, f"{name}_{x}", ActFakeQuant(8))
    for x in ("ln1", "ln2"):
        setattr(model, f"{name}_{x}", nn.LayerNorm(dim))
    q = getattr(model, f"{name}_q")
    for x in ("k", "v"):                       # k and v read LN1's output on q's code (tied while widths agree)
        getattr(model, f"{name}_{x}").act_quant = TiedActQuant(q.act_quant)
    return EncoderBlock(name, heads)


class _Transformer(QuantModel):
    """Patch embedding (a strided conv, no activation), encoder blocks, token mean, linear head.
    No position embedding (the strided conv's overlapping patches carry local layout only)."""

    def _build(self, embed: Layer, dim: int, heads: int, mlp: int, depth: int, num_classes: int):
        from .blocks import linear

        plan: list[Step] = [embed, TokensStep()]
        for b in range(depth):
            plan.append(encoder_block(self, f"b{b + 1}", dim, heads, mlp))
        plan += [TokenPoolStep(), FlattenStep(), linear(self, "head", dim, num_classes, classifier=True)]
        self.set_plan(plan)


class ViTTiny(_Transformer):
    """ViT-style: a 3x3 stride-2 patch conv (3x3 for 8x8 digits: 16 tokens), ``depth`` blocks of width
    ``dim`` with ``heads`` heads and an MLP of ``2*dim``, mean of the tokens, linear head."""

    arch = "vit_tiny"

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, dim: int = 32, heads: int = 2,
                 depth: int = 2):
        super().__init__()
        c, hgt, wid = image_shape(self.arch, input_shape)
        self.input_shape = (c, hgt, wid)
        self.num_classes = num_classes
        stride = 2 if min(hgt, wid) >= 4 else 1
        if hgt > 16:
            stride = 4
        self.patch = QConv2d(c, dim, 3 if stride <= 2 else 4, stride=stride, padding=1 if stride <= 2 else 0)
        self._build(Layer("patch", None, None), dim, heads, 2 * dim, depth, num_classes)


class KWSTransformer(_Transformer):
    """Keyword-spotting transformer on a 1-D sequence (images read row by row, as m5): a strided
    conv1d patch embedding (8 taps, stride 4), ``depth`` encoder blocks, token mean, linear head."""

    arch = "kws_transformer"

    def __init__(self, input_shape: Sequence[int] = (1, 64), num_classes: int = 10, dim: int = 32, heads: int = 2,
                 depth: int = 2):
        super().__init__()
        c, length = sequence_shape(input_shape)
        self.input_shape = (c, length)
        self.num_classes = num_classes
        ks = min(8, length)
        stride = max(1, min(4, length // 8), length // 64)
        self.patch = QConv1d(c, dim, ks, stride=stride, padding=0)
        self._build(Layer("patch", None, None), dim, heads, 2 * dim, depth, num_classes)


__all__ = ["EncoderBlock", "KWSTransformer", "QTokenLinear", "TokenPoolStep", "TokensStep", "ViTTiny",
           "encoder_block"]
