"""tinyllama: a character-level LLaMA (RMSNorm, rotary attention, SwiGLU) small enough for a core.

Three forms of one model, each the twin of the next:

* ``TinyLlama`` -- the float torch model, trained here on CPU in about a minute;
* ``IntLlama`` -- the integer model (NumPy, ``kernels/ir/llm.py`` ops and IR ``Linear``
  ops for the 15 linear layers), built post-training from the float one and a scheme
  of one ``(qa, qw)`` per linear layer; it is what the generated C computes;
* the generated C (``kernels/ir/llm_codegen.py``): prefill and greedy decode with a KV cache.

Corpus: a local TinyStories text file when one is given (``corpus_path`` or the
``MICO_TINYSTORIES`` environment variable), else a generated corpus of short
stories from a fixed grammar (``generated_corpus``; seeded, about 200 KB).
Vocabulary: the 95 printable ASCII characters and newline (96 ids < 128, so a
token is one int8 of the model input); other characters read as ``?``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import UserError
from kernels.ir import llm as L
from kernels.ir.llm_attention import CausalAttention
from kernels.ir.ops import Linear
from kernels.ir.types import Requant, quantize_multiplier, quantize_multipliers

log = logging.getLogger(__name__)

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
_IDS = {c: i for i, c in enumerate(VOCAB)}
LINEARS = ("wq", "wk", "wv", "wo", "w1", "w3", "w2")
ACT_BITS, WEIGHT_BITS = (2, 4, 8), (2, 4, 8)


def encode(text: str) -> np.ndarray:
    return np.array([_IDS.get(c, _IDS["?"]) for c in text], dtype=np.int64)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


# ---- corpus ----------------------------------------------------------------------------------

_NAMES = ["Tom", "Lily", "Ben", "Mia", "Sam", "Anna", "Max", "Sue"]
_ANIMALS = ["cat", "dog", "bird", "fish", "frog", "duck", "bear", "fox"]
_THINGS = ["ball", "cake", "box", "hat", "kite", "book", "cup", "toy"]
_COLORS = ["red", "blue", "big", "small", "green", "happy", "old", "shiny"]
_PLACES = ["park", "garden", "house", "forest", "lake", "school", "shop", "beach"]


def generated_corpus(n_stories: int = 1500, seed: int = 0) -> str:
    """Short stories from a fixed grammar (seeded): the bundled corpus when no TinyStories file is given."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    out = []
    for _ in range(n_stories):
        n, a, t, c, p = pick(_NAMES), pick(_ANIMALS), pick(_THINGS), pick(_COLORS), pick(_PLACES)
        m = pick([x for x in _NAMES if x != n])
        s = [f"Once upon a time, {n} had a {c} {a}.",
             f"One day, {n} went to the {p} with the {a}.",
             pick([f"The {a} found a {t}.", f"{n} saw a {c} {t}.", f"{m} came to play."]),
             pick([f"{n} was very happy.", f"The {a} was sad.", f"{m} and {n} played with the {t}."]),
             pick(["They had fun all day.", "Then they went home.", f"The {a} said hello to {m}."])]
        out.append(" ".join(s))
    return "\n".join(out) + "\n"


def load_corpus(corpus_path: str | os.PathLike | None = None, max_chars: int = 400_000) -> tuple[str, str]:
    """(text, source name): the TinyStories file given (or ``$MICO_TINYSTORIES``), else the generated one."""
    path = corpus_path or os.environ.get("MICO_TINYSTORIES")
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"the corpus file {p} does not exist; pass a TinyStories text file or none.")
        text = p.read_text(encoding="utf-8", errors="replace")[:max_chars]
        if len(text) < 10_000:
            raise UserError(f"the corpus file {p} holds {len(text)} characters; it needs at least 10,000.")
        return text, f"file:{p.name}"
    return generated_corpus(), "generated"


def splits(ids: np.ndarray) -> dict[str, np.ndarray]:
    """train / val / test: the first 80 %, the next 10 %, the last 10 % of the token stream."""
    n = len(ids)
    return {"train": ids[: int(0.8 * n)], "val": ids[int(0.8 * n): int(0.9 * n)], "test": ids[int(0.9 * n):]}


# ---- float model -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LlamaConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 4
    ffn: int = 128
    vocab: int = len(VOCAB)
    max_len: int = 64
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def check(self) -> None:
        if self.dim % self.heads or self.head_dim % 2 or self.dim & (self.dim - 1):
            raise UserError(f"tinyllama needs a power-of-two dim divisible by heads with an even head size, "
                            f"got dim={self.dim}, heads={self.heads}.")
        if self.vocab > 128:
            raise UserError(f"tinyllama token ids must fit an int8 input: vocab {self.vocab} > 128.")


def _torch():
    import torch

    return torch


def build_float(cfg: LlamaConfig, seed: int = 0):
    torch = _torch()
    nn = torch.nn
    cfg.check()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d, f = cfg.dim, cfg.ffn
            self.attn_norm = nn.Parameter(torch.ones(d))
            self.ffn_norm = nn.Parameter(torch.ones(d))
            self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
            self.w1, self.w3 = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
            self.w2 = nn.Linear(f, d, bias=False)

    class TinyLlama(nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = cfg
            self.emb = nn.Embedding(cfg.vocab, cfg.dim)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.norm = nn.Parameter(torch.ones(cfg.dim))
            self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
            j = torch.arange(cfg.head_dim // 2, dtype=torch.float64)
            ang = torch.arange(cfg.max_len, dtype=torch.float64)[:, None] * cfg.rope_base ** (-2 * j / cfg.head_dim)
            self.register_buffer("cos", torch.cos(ang).float(), persistent=False)
            self.register_buffer("sin", torch.sin(ang).float(), persistent=False)

        @staticmethod
        def rms(x, g):
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * g

        def rope(self, x):                 # (B, H, T, hd): pairs (j, j + hd/2)
            T, half = x.shape[2], x.shape[3] // 2
            c, s = self.cos[:T], self.sin[:T]
            a, b = x[..., :half], x[..., half:]
            return torch.cat([a * c - b * s, a * s + b * c], -1)

        def forward(self, idx, taps: dict | None = None):
            B, T = idx.shape
            H, hd = cfg.heads, cfg.head_dim
            h = self.emb(idx)
            tap = (lambda k, v: taps.setdefault(k, []).append(v.detach())) if taps is not None else (lambda k, v: None)
            tap("h", h)
            mask = torch.full((T, T), float("-inf")).triu(1)
            for i, blk in enumerate(self.blocks):
                x = self.rms(h, 1.0)
                tap(f"{i}.xattn", x)
                x = x * blk.attn_norm
                q = blk.wq(x).view(B, T, H, hd).transpose(1, 2)
                k = blk.wk(x).view(B, T, H, hd).transpose(1, 2)
                v = blk.wv(x).view(B, T, H, hd).transpose(1, 2)
                tap(f"{i}.q", q)
                tap(f"{i}.k", k)
                tap(f"{i}.v", v)
                q, k = self.rope(q), self.rope(k)
                tap(f"{i}.q", q)
                tap(f"{i}.k", k)
                sc = q @ k.transpose(-1, -2) / math.sqrt(hd)
                tap(f"{i}.scores", sc.masked_fill(mask.isinf(), 0.0))
                att = torch.softmax(sc + mask, -1)
                o = (att @ v).transpose(1, 2).reshape(B, T, cfg.dim)
                tap(f"{i}.o", o)
                h = h + blk.wo(o)
                tap("h", h)
                x = self.rms(h, 1.0)
                tap(f"{i}.xffn", x)
                x = x * blk.ffn_norm
                a, b = blk.w1(x), blk.w3(x)
                tap(f"{i}.a", a)
                tap(f"{i}.b", b)
                sa = torch.nn.functional.silu(a)
                tap(f"{i}.silu", sa)
                g = sa * b
                tap(f"{i}.g", g)
                h = h + blk.w2(g)
                tap("h", h)
            x = self.rms(h, 1.0)
            tap("xhead", x)
            return self.head(x * self.norm)

    torch.manual_seed(seed)
    return TinyLlama()


def batches(ids: np.ndarray, seq: int, batch: int, rng: np.random.Generator):
    starts = rng.integers(0, len(ids) - seq - 1, batch)
    x = np.stack([ids[s: s + seq] for s in starts])
    y = np.stack([ids[s + 1: s + seq + 1] for s in starts])
    return x, y


def train_float(cfg: LlamaConfig, train_ids: np.ndarray, steps: int = 800, seed: int = 0, batch: int = 32,
                lr: float = 3e-3):
    """AdamW with a cosine schedule on random windows of the training split (CPU, ~1 min)."""
    torch = _torch()
    model = build_float(cfg, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        x, y = batches(train_ids, cfg.max_len, batch, rng)
        logits = model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab), torch.from_numpy(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0:
            log.info("tinyllama step %d loss %.3f", step, float(loss.detach()))
    model.eval()
    return model


def trained_model(cfg: LlamaConfig = LlamaConfig(), corpus_path=None, steps: int = 800, seed: int = 0):
    """(float model, splits, corpus source): trained once per (config, corpus, steps, seed) and cached
    as a state dict (``torch.load(weights_only=True)``) under the mico cache."""
    torch = _torch()
    from kernels.toolchain import cache_root

    text, source = load_corpus(corpus_path)
    ids = encode(text)
    key = hashlib.sha256(repr((cfg, steps, seed)).encode() + hashlib.sha256(text.encode()).digest()).hexdigest()[:16]
    path = Path(cache_root()) / "tinyllama" / f"{key}.pt"
    sp = splits(ids)
    model = build_float(cfg, seed)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        model = train_float(cfg, sp["train"], steps, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return model, sp, source


def float_perplexity(model, ids: np.ndarray, seq: int | None = None, max_windows: int = 64) -> float:
    torch = _torch()
    seq = seq or model.cfg.max_len
    x, y = windows(ids, seq, max_windows)
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
    return float(math.exp(float(nll)))


def windows(ids: np.ndarray, seq: int, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, next-token) windows from the start of a split (deterministic)."""
    n = min(max_windows, (len(ids) - 1) // seq)
    x = np.stack([ids[i * seq: (i + 1) * seq] for i in range(n)])
    y = np.stack([ids[i * seq + 1: (i + 1) * seq + 1] for i in range(n)])
    return x, y


# ---- integer model ---------------------------------------------------------------------------

def _qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def act_scale(values: np.ndarray, bits: int) -> float:
    """Per-tensor scale of signed ``bits``-bit codes: max |x| at 8 bits; below, the clip of
    a few candidates that minimises the squared error on the calibration values."""
    v = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    amax = float(v.max()) if v.size else 1.0
    amax = max(amax, 1e-8)
    if bits >= 8:
        return amax / _qmax(bits)
    best, best_err = amax, math.inf
    sample = v[:: max(1, v.size // 20000)]
    for frac in (1.0, 0.8, 0.6, 0.45, 0.35, 0.25):
        s = amax * frac / _qmax(bits)
        q = np.clip(np.round(sample / s), -_qmax(bits) - 1, _qmax(bits)) * s
        err = float(((q - sample) ** 2).mean())
        if err < best_err:
            best, best_err = amax * frac, err
    return best / _qmax(bits)


def quant_weight(w: np.ndarray, bits: int, ternary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel codes and scales (DESIGN.md s3).  ``ternary`` (2-bit only):
    BitNet b1.58 codes {-1, 0, +1} with the absmean scale, run by the 2-bit kernels unchanged."""
    if ternary:
        if bits != 2:
            raise UserError(f"ternary weights are stored at qw=2, not qw={bits}.")
        s = np.maximum(np.abs(w).mean(axis=1), 1e-12)
        return np.clip(np.round(w / s[:, None]), -1, 1).astype(np.int8), s
    amax = np.maximum(np.abs(w).max(axis=1), 1e-12)
    s = amax / _qmax(bits)
    q = np.clip(np.round(w / s[:, None]), -_qmax(bits) - 1, _qmax(bits))
    return q.astype(np.int8), s


def normalize_llama_scheme(scheme, cfg: LlamaConfig) -> list[tuple[int, int]]:
    """One (qa, qw) per linear layer: LINEARS of each block in order, then the head."""
    n = cfg.layers * len(LINEARS) + 1
    if scheme is None:
        return [(8, 8)] * n
    if isinstance(scheme, tuple) and len(scheme) == 2 and all(isinstance(v, int) for v in scheme):
        scheme = [scheme] * n
    out = [(int(a), int(w)) for a, w in scheme]
    if len(out) != n:
        raise UserError(f"a tinyllama scheme has {n} (qa, qw) pairs (one per linear layer), got {len(out)}.")
    for a, w in out:
        if a not in ACT_BITS or w not in WEIGHT_BITS:
            raise UserError(f"tinyllama layers take qa in {ACT_BITS} and qw in {WEIGHT_BITS}, got {a}x{w}.")
    return out


def linear_names(cfg: LlamaConfig) -> list[str]:
    return [f"l{i}_{n}" for i in range(cfg.layers) for n in LINEARS] + ["head"]


@dataclass
class _Act:
    """A requantisation of int32 values onto the input codes of a linear layer."""

    mult: int
    shift: int
    bits: int

    def __call__(self, x):
        return L.requant_codes(x, self.mult, self.shift, self.bits)


@dataclass
class IntBlock:
    q_in: _Act
    k_in: _Act
    v_in: _Act
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    wo_res: tuple       # (mult, shift) per channel onto the residual
    a_in: _Act
    b_in: _Act
    w1: Linear
    w3: Linear
    silu: np.ndarray    # 256 int8
    g_in: _Act
    w2: Linear
    w2_res: tuple
    att: CausalAttention = None      # QK^T, softmax, AV (kernels/ir/attention.py ops)


@dataclass
class IntLlama:
    cfg: LlamaConfig
    scheme: list
    emb: np.ndarray
    emb_rq: tuple
    blocks: list
    head_in: _Act
    head: Linear
    cos: np.ndarray
    sin: np.ndarray
    scales: dict = field(default_factory=dict)

    @property
    def linears(self) -> list[Linear]:
        out = [getattr(b, n) for b in self.blocks for n in LINEARS]
        return out + [self.head]

    # -- integer semantics, batched over (B, T): position t sees tokens 0..t --
    @staticmethod
    def _lin(op: Linear, x: np.ndarray) -> np.ndarray:
        shp = x.shape
        y = op.run([x.reshape(-1, shp[-1])])
        return y.reshape(*shp[:-1], -1)

    def attention(self, blk: IntBlock, q, k, v) -> np.ndarray:
        """Causal attention of int8 codes (B, T, D) -> wo's input codes (B, T, D)."""
        return blk.att.run(q, k, v)

    def forward_int(self, tokens) -> np.ndarray:
        """int32 logits (B, T, vocab) of every position of token ids (B, T)."""
        tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
        T = tokens.shape[1]
        if T > self.cfg.max_len:
            raise UserError(f"tinyllama reads at most {self.cfg.max_len} tokens, got {T}.")
        pos = np.arange(T)
        h = L.embed(self.emb, tokens, *self.emb_rq)
        for blk in self.blocks:
            n = L.rmsnorm(h)
            q = L.rope(self._lin(blk.wq, blk.q_in(n)), pos, self.cos, self.sin, self.cfg.heads)
            k = L.rope(self._lin(blk.wk, blk.k_in(n)), pos, self.cos, self.sin, self.cfg.heads)
            v = self._lin(blk.wv, blk.v_in(n))
            o = self.attention(blk, q, k, v)
            h = L.resadd(h, self._lin(blk.wo, o), *blk.wo_res)
            n = L.rmsnorm(h)
            a = self._lin(blk.w1, blk.a_in(n))
            b = self._lin(blk.w3, blk.b_in(n))
            g = blk.g_in(L.lut(blk.silu, a) * b)
            h = L.resadd(h, self._lin(blk.w2, g), *blk.w2_res)
        return self._lin(self.head, self.head_in(L.rmsnorm(h)))

    def generate(self, prompt, n_tokens: int) -> np.ndarray:
        """Greedy decode: the ``n_tokens`` ids the integer model appends to ``prompt``."""
        seq = list(np.asarray(prompt, dtype=np.int64))
        if not seq:
            raise UserError("the prompt is empty; give at least one token.")
        if len(seq) + n_tokens - 1 > self.cfg.max_len:
            raise UserError(f"a prompt of {len(seq)} tokens plus {n_tokens} generated exceeds the context "
                            f"of {self.cfg.max_len}.")
        out = []
        for _ in range(n_tokens):
            nxt = int(L.argmax(self.forward_int(np.array([seq]))[0, -1]))
            out.append(nxt)
            seq.append(nxt)
        return np.array(out, dtype=np.int64)

    def perplexity(self, ids: np.ndarray, max_windows: int = 64) -> float:
        """Perplexity of the integer logits (dequantised by the head's scales) on windows of a split."""
        x, y = windows(ids, self.cfg.max_len, max_windows)
        logits = self.forward_int(x).astype(np.float64) * self.scales["head_out"][None, None, :]
        logits -= logits.max(-1, keepdims=True)
        lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll = -np.take_along_axis(lp, y[..., None], -1).mean()
        return float(math.exp(nll))

    def next_token_accuracy(self, ids: np.ndarray, max_windows: int = 64) -> float:
        x, y = windows(ids, self.cfg.max_len, max_windows)
        return float((L.argmax(self.forward_int(x)) == y).mean())


def _linear(name, w_float, qa, qw, s_in, s_out, ternary=False):
    """An IR Linear: codes at ``qa`` in, int8 codes at ``s_out`` out (or int32 with ``s_out`` None)."""
    wq, sw = quant_weight(w_float, qw, ternary and qw == 2)
    zero = np.zeros(w_float.shape[0], dtype=np.int64)
    if s_out is None:
        rq = Requant.from_scale(zero, s_in * sw, relu=False, out_bits=0)
        return Linear(name=name, qa=qa, qw=qw, out_bits=0, weight=wq, rq=rq, out_features=w_float.shape[0]), sw
    rq = Requant.from_scale(zero, s_in * sw / s_out, relu=False, out_bits=8)
    return Linear(name=name, qa=qa, qw=qw, out_bits=8, weight=wq, rq=rq, out_features=w_float.shape[0]), sw


def _act(real: float, bits: int) -> _Act:
    m, s = quantize_multiplier(real)
    return _Act(m, s, bits)


def build_integer(model, calib_ids: np.ndarray, scheme=None, n_windows: int = 16, ternary: bool = False) -> IntLlama:
    """Post-training integer model: scales calibrated on windows of ``calib_ids`` (train split).
    ``ternary``: every qw=2 layer gets ternary {-1, 0, +1} weights (1.58 bits) instead of 2-bit codes."""
    torch = _torch()
    cfg = model.cfg
    scheme = normalize_llama_scheme(scheme, cfg)
    x, _ = windows(calib_ids, cfg.max_len, n_windows)
    taps: dict = {}
    with torch.no_grad():
        model(torch.from_numpy(x), taps)
    cat = {k: torch.cat([t.reshape(-1) for t in v]).numpy() for k, v in taps.items()}
    s_h = float(np.abs(cat["h"]).max()) * 1.25 / L.RES_MAX
    n_scale = 1.0 / (1 << L.NORM_FRAC)                 # real value of one RMSNorm output unit
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    emb = sd["emb.weight"]
    s_e = float(np.abs(emb).max()) / 127
    emb_q = np.clip(np.round(emb / s_e), -128, 127).astype(np.int8)
    m, s = quantize_multiplier(s_e / s_h)
    names = linear_names(cfg)
    blocks = []
    scales: dict = {"h": s_h}
    it = iter(zip(names, scheme))
    for i in range(cfg.layers):
        p = f"blocks.{i}."
        g_attn, g_ffn = sd[p + "attn_norm"], sd[p + "ffn_norm"]
        (nq, (aq, wq_)), (nk, (ak, wk_)), (nv, (av, wv_)), (no, (ao, wo_)), \
            (n1, (a1, w1_)), (n3, (a3, w3_)), (n2, (a2, w2_)) = [next(it) for _ in LINEARS]
        xa = cat[f"{i}.xattn"]
        s_q = float(np.abs(cat[f"{i}.q"]).max()) / 127
        s_k = float(np.abs(cat[f"{i}.k"]).max()) / 127
        s_v = float(np.abs(cat[f"{i}.v"]).max()) / 127
        sxq, sxk, sxv = (act_scale(xa, b) for b in (aq, ak, av))
        wq, _ = _linear(nq, sd[p + "wq.weight"] * g_attn, aq, wq_, sxq, s_q, ternary=ternary)
        wk, _ = _linear(nk, sd[p + "wk.weight"] * g_attn, ak, wk_, sxk, s_k, ternary=ternary)
        wv, _ = _linear(nv, sd[p + "wv.weight"] * g_attn, av, wv_, sxv, s_v, ternary=ternary)
        s_o = act_scale(cat[f"{i}.o"], ao)
        wo, swo = _linear(no, sd[p + "wo.weight"], ao, wo_, s_o, None, ternary=ternary)
        wo_res = quantize_multipliers(s_o * swo / s_h)
        s_sc = float(np.abs(cat[f"{i}.scores"]).max()) / 127
        att = CausalAttention.from_scales(f"l{i}_attn", cfg.heads, cfg.head_dim, s_q, s_k, s_sc, s_v, s_o, ao)
        xf = cat[f"{i}.xffn"]
        sx1, sx3 = act_scale(xf, a1), act_scale(xf, a3)
        s_a = float(np.abs(cat[f"{i}.a"]).max()) / 127
        s_b = float(np.abs(cat[f"{i}.b"]).max()) / 127
        w1, _ = _linear(n1, sd[p + "w1.weight"] * g_ffn, a1, w1_, sx1, s_a, ternary=ternary)
        w3, _ = _linear(n3, sd[p + "w3.weight"] * g_ffn, a3, w3_, sx3, s_b, ternary=ternary)
        s_s = float(np.abs(cat[f"{i}.silu"]).max()) / 127
        codes = np.arange(-128, 128, dtype=np.float64) * s_a
        silu = np.clip(np.round(codes / (1 + np.exp(-codes)) / s_s), -128, 127).astype(np.int8)
        s_g = act_scale(cat[f"{i}.g"], a2)
        w2, sw2 = _linear(n2, sd[p + "w2.weight"], a2, w2_, s_g, None, ternary=ternary)
        blocks.append(IntBlock(
            q_in=_act(n_scale / sxq, aq), k_in=_act(n_scale / sxk, ak), v_in=_act(n_scale / sxv, av),
            wq=wq, wk=wk, wv=wv, wo=wo, wo_res=wo_res,
            a_in=_act(n_scale / sx1, a1), b_in=_act(n_scale / sx3, a3), w1=w1, w3=w3, silu=silu,
            g_in=_act(s_s * s_b / s_g, a2), w2=w2, w2_res=quantize_multipliers(s_g * sw2 / s_h), att=att))
        scales[f"{i}.silu"] = (s_a, s_s)
    nh, (ah, wh_) = next(it)
    sxh = act_scale(cat["xhead"], ah)
    head, swh = _linear(nh, sd["head.weight"] * sd["norm"], ah, wh_, sxh, None, ternary=ternary)
    scales["head_out"] = sxh * swh
    cos, sin = L.rope_tables(cfg.max_len, cfg.head_dim, cfg.rope_base)
    return IntLlama(cfg, scheme, emb_q, (m, s), blocks, _act(n_scale / sxh, ah), head, cos, sin, scales)


# ---- search interface -------------------------------------------------------------------------

def linear_specs(cfg: LlamaConfig, scheme) -> list:
    """Layer-mode matmul specs (N = 1: one decode step) of the linear layers under a scheme."""
    from harness.spec import KernelSpec

    shapes = [(cfg.dim, cfg.dim)] * 4 + [(cfg.ffn, cfg.dim)] * 2 + [(cfg.dim, cfg.ffn)]
    out_bits = [8, 8, 8, 0, 8, 8, 0]
    specs = []
    for i, (a, w) in enumerate(normalize_llama_scheme(scheme, cfg)):
        if i == cfg.layers * len(LINEARS):
            M, K, ob = cfg.vocab, cfg.dim, 0
        else:
            (M, K), ob = shapes[i % len(LINEARS)], out_bits[i % len(LINEARS)]
        specs.append(KernelSpec("matmul", (1, M, K), a, w, "layer", ob))
    return specs


def search_scheme(model, sp: dict, latency_fn, budget: float, n_evals: int = 12, seed: int = 0,
                  bits=(4, 8), searcher: str = "random", max_windows: int = 8):
    """Per-layer (qa, qw) search of tinyllama with the project's searchers: the objective is
    next-token accuracy on the validation split (never the test split), the cost
    ``latency_fn(specs) -> (per layer, total)`` (a fitted layer proxy or an analytic count,
    ``mpq.evaluate``) of the linear layers' layer-mode specs of one decode step."""
    from mpq.search import make_searcher

    cfg = model.cfg
    n = cfg.layers * len(LINEARS) + 1

    def acc(scheme):
        return build_integer(model, sp["train"], list(scheme)).next_token_accuracy(sp["val"], max_windows)

    def lat(scheme):
        per, total = latency_fn(linear_specs(cfg, list(scheme)))
        return np.asarray(per, dtype=np.float64), float(total)

    s = make_searcher(searcher, n, acc, lat, budget, n_evals=n_evals, seed=seed, bits=bits)
    return s.search()


# ---- torch twins of the integer ops (int64 tensors; equal to kernels/ir/llm.py element by element) ----

def _t_rs(t, s):
    return (t >> s) + ((t >> (s - 1)) & 1)


def torch_isqrt(v):
    torch = _torch()
    r = torch.floor(torch.sqrt(v.double())).long()
    r = torch.where(r * r > v, r - 1, r)
    return torch.where((r + 1) * (r + 1) <= v, r + 1, r)


def torch_rmsnorm(h):
    torch = _torch()
    d = h.shape[-1]
    log2d = int(math.log2(d))
    s = (h * h).sum(-1, keepdim=True) + d
    bl = torch.frexp(s.double())[1].long()
    k = torch.clamp((28 + log2d - bl) // 2, 0, L.NORM_MAX_K)
    r = torch_isqrt((s << (2 * k)) >> log2d)
    inv = L.INV_ONE // r
    return _t_rs(h * inv, L.NORM_FRAC - k)


def torch_requant_codes(x, mult: int, shift: int, bits: int):
    torch = _torch()
    if bits == 1:
        return torch.where(x >= 0, 1, -1)
    return torch.clamp(_t_rs(x * int(mult), int(shift)), -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def torch_resadd(h, y, mult, shift):
    torch = _torch()
    return torch.clamp(h + _t_rs(y * torch.as_tensor(mult).long(), torch.as_tensor(shift).long()),
                       L.RES_MIN, L.RES_MAX)


def torch_embed(table, tokens, mult: int, shift: int):
    torch = _torch()
    return torch.clamp(_t_rs(torch.as_tensor(table).long()[tokens] * int(mult), int(shift)), L.RES_MIN, L.RES_MAX)


def torch_rope(x, pos, cos, sin, heads: int):
    torch = _torch()
    d = x.shape[-1]
    hd = d // heads
    xs = x.reshape(*x.shape[:-1], heads, 2, hd // 2)
    c = torch.as_tensor(cos)[pos][..., None, :]
    s = torch.as_tensor(sin)[pos][..., None, :]
    a, b = xs[..., 0, :], xs[..., 1, :]
    y = torch.stack([_t_rs(a * c - b * s, L.ROPE_FRAC), _t_rs(a * s + b * c, L.ROPE_FRAC)], -2)
    return torch.clamp(y.reshape(x.shape), -128, 127)


def fake_quant(codes, scale: float):
    """The fake-quant value of integer codes (what a float consumer of the integer op sees)."""
    return codes.double() * scale
