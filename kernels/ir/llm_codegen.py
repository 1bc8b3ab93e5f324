"""C for the tiny LLaMA: one decode step over a KV cache, prefill and greedy decode around it.

A language model is not one pass of a layer graph: the generated C runs the
same step once per prompt token (prefill, filling the KV cache) and once per
generated token.  It reuses the layer IR where the work is the IR's: every linear
layer is an IR ``Linear`` (its constants and its call of the firmware's packed
``mico_matmul`` and ``mico_requant``, exactly as in any model), attention is the
``AttnMatMul`` / ``Softmax`` ops' C, the image goes through ``codegen.compile_image``
and the firmware's unchanged model ABI (LOAD_MODEL / RUN_MODEL; docs/ir.md "LLM
token loop").  What is new -- RMSNorm, rotary embedding, the SiLU table, the
residual, the token loop -- is ``kernels/ir/llm.py``'s C.

The model object is duck-typed (``mpq.models.tinyllama.IntLlama``): this module
sits below mpq/ and does not import it.
"""

from __future__ import annotations

import math

import jinja2
import numpy as np

from harness.errors import BuildError

from . import llm as L
from .attention import ATTN_C, SOFTMAX_C
from .codegen import ALIGN, TEMPLATES, Generated
from .emit import EmitContext, c_ident
from .types import TensorType


def _align(x: int) -> int:
    return (x + ALIGN - 1) // ALIGN * ALIGN


def _linear_ctx(op, src: str, dst: str) -> EmitContext:
    k = op.weight.shape[1]
    return EmitContext(sym=c_ident(op.name), ins=[TensorType((k,), op.qa)],
                       out=TensorType((op.out_features,), op.out_bits), src=[src], dst=dst)


def generate_llm(model, n_gen: int, max_prompt: int, meta: dict | None = None,
                 term_lens: list[int] | None = None, keys_only: bool = False) -> Generated:
    """C source of the token loop for an integer LLaMA (prompt of 1..max_prompt tokens, n_gen generated)."""
    cfg = model.cfg
    if n_gen < 1 or max_prompt < 1:
        raise BuildError("the token loop needs at least one prompt token and one generated token.")
    if max_prompt + n_gen - 1 > cfg.max_len:
        raise BuildError(f"{max_prompt} prompt tokens plus {n_gen} generated exceed the context of {cfg.max_len}.")
    if max_prompt > 255:
        raise BuildError("the prompt length is one byte of the model input: at most 255 tokens.")
    D, F, V, H, T = cfg.dim, cfg.ffn, cfg.vocab, cfg.heads, cfg.max_len
    hd = D // H
    arr = EmitContext.array
    decls = [arr("int8_t", "c_emb", model.emb.reshape(-1)),
             arr("int32_t", "c_rope_cos", model.cos.reshape(-1)), arr("int32_t", "c_rope_sin", model.sin.reshape(-1)),
             arr("int32_t", "c_zero", [0])]
    body: list[tuple[tuple | None, str]] = [
        (("embed",), f"llm_embed(c_emb, tok, {D}u, {int(model.emb_rq[0])}, {int(model.emb_rq[1])}u, h);")]

    def act(name, a, src, dst, count):
        decls.append(f"static const int32_t {name}_m[1] = {{ {int(a.mult)} }};")
        decls.append(f"static const uint8_t {name}_s[1] = {{ {int(a.shift)}u }};")
        body.append((("requant", count, a.bits),
                     f"api->requant({src}, {dst}, {count}u, 1u, {count}u, c_zero, {name}_m, {name}_s, 0, {a.bits});"))

    def linear(op, src, dst):
        ctx = _linear_ctx(op, src, dst)
        decls.append(op.c_decls(ctx))
        body.append((("linear", op.name), op.c_body(ctx)))

    lin_scratch = [op.scratch([TensorType((op.weight.shape[1],), op.qa)], TensorType((op.out_features,), op.out_bits))
                   for op in model.linears]
    log2d = int(math.log2(D))
    for i, blk in enumerate(model.blocks):
        kc, vc = f"(kc + {i * T * D}u)", f"(vc + {i * T * D}u)"
        krow, vrow = f"(kc + {i * T * D}u + pos * {D}u)", f"(vc + {i * T * D}u + pos * {D}u)"
        body.append((None, f"/* ---- block {i}: attention ---- */"))
        body.append((("rmsnorm",), f"llm_rmsnorm(h, {D}u, {log2d}u, nrm);"))
        act(f"c_l{i}_qin", blk.q_in, "nrm", "x8", D)
        linear(blk.wq, "x8", "q8")
        body.append((("rope",), f"llm_rope(q8, pos, {H}u, {hd}u, c_rope_cos, c_rope_sin);"))
        act(f"c_l{i}_kin", blk.k_in, "nrm", "x8", D)
        linear(blk.wk, "x8", krow)
        body.append((("rope",), f"llm_rope({krow}, pos, {H}u, {hd}u, c_rope_cos, c_rope_sin);"))
        act(f"c_l{i}_vin", blk.v_in, "nrm", "x8", D)
        linear(blk.wv, "x8", vrow)
        sym = f"c_l{i}_att"
        decls.append(blk.att.c_decls(sym, arr))
        body.append((("attend", blk.att.av.out_bits), blk.att.c_body(sym, "q8", kc, vc, "len", hd, "sc8", "p8", "e32", "x8")))
        linear(blk.wo, "x8", "y32")
        decls.append(arr("int32_t", f"c_l{i}_wores_m", blk.wo_res[0]))
        decls.append(arr("uint8_t", f"c_l{i}_wores_s", blk.wo_res[1]))
        body.append((("resadd",), f"llm_resadd(h, y32, {D}u, c_l{i}_wores_m, c_l{i}_wores_s);"))
        body.append((None, f"/* ---- block {i}: feed-forward (SwiGLU) ---- */"))
        body.append((("rmsnorm",), f"llm_rmsnorm(h, {D}u, {log2d}u, nrm);"))
        act(f"c_l{i}_ain", blk.a_in, "nrm", "x8", D)
        linear(blk.w1, "x8", "a8")
        act(f"c_l{i}_bin", blk.b_in, "nrm", "x8", D)
        linear(blk.w3, "x8", "b8")
        decls.append(arr("int8_t", f"c_l{i}_silu", blk.silu))
        body.append((("swiglu",), f"llm_lut(a8, c_l{i}_silu, y32, {F}u, b8);"))
        act(f"c_l{i}_gin", blk.g_in, "y32", "x8", F)
        linear(blk.w2, "x8", "y32")
        decls.append(arr("int32_t", f"c_l{i}_w2res_m", blk.w2_res[0]))
        decls.append(arr("uint8_t", f"c_l{i}_w2res_s", blk.w2_res[1]))
        body.append((("resadd",), f"llm_resadd(h, y32, {D}u, c_l{i}_w2res_m, c_l{i}_w2res_s);"))
    body.append((None, "/* ---- head ---- */"))
    body.append((("rmsnorm",), f"llm_rmsnorm(h, {D}u, {log2d}u, nrm);"))
    act("c_head_in", model.head_in, "nrm", "x8", D)
    linear(model.head, "x8", "logits")

    # scratch: linear-layer temporaries first, then the step's buffers and the KV cache
    off: dict[str, int] = {"packed": 0}
    off["acc"] = _align(4 * max(s.packed_words for s in lin_scratch))
    accw = max(max(s.acc_words for s in lin_scratch), H * T, D)
    off["kscratch"] = _align(off["acc"] + 4 * accw)
    pos = _align(off["kscratch"] + max(s.kernel_bytes for s in lin_scratch))
    for name, nbytes in (("h", 4 * D), ("n", 4 * D), ("y32", 4 * max(D, F)), ("e32", 4 * T), ("logits", 4 * V),
                         ("x8", max(D, F)), ("q8", D), ("a8", F), ("b8", F), ("sc8", H * T), ("p8", H * T),
                         ("kc", cfg.layers * T * D), ("vc", cfg.layers * T * D)):
        off[name] = pos
        pos = _align(pos + nbytes)
    total = pos
    model_keys = [k for k, _ in body if k is not None] + [("argmax",)]
    body_text = "\n".join(code for _, code in body)
    terms_text, term_keys = "", []
    if term_lens:
        # one timed run of every distinct op of the step (after an untimed warm run), attention at
        # each cache length in term_lens: the per-op terms of the token latency model
        first: dict = {}
        for key, code in body:
            if key is not None and key[0] != "linear" and key not in first:
                first[key] = code
        first[("argmax",)] = f"output[0] = (int32_t)llm_argmax(logits, {V}u);"
        chunks = []
        for key, code in first.items():
            for ln in (term_lens if key[0] == "attend" else [None]):
                k = len(term_keys)
                term_keys.append(key + ((ln,) if ln is not None else ()))
                setlen = f"len = {ln}u;\n" if ln is not None else ""
                chunks.append(f"{setlen}{code}\nt = api->timer();\n{code}\ntimes[{k}] = api->timer() - t;")
        terms_text = "\n".join(chunks)
    meta = dict(meta or {})
    meta.setdefault("model", "tinyllama")
    meta["bits"] = " ".join(f"{a}x{w}" for a, w in model.scheme)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    src = env.get_template("llm.c.j2").render(
        meta=meta, cfg=cfg, in_count=1 + max_prompt, n_gen=n_gen, max_prompt=max_prompt, scratch_bytes=total,
        support=[L.C_SUPPORT, SOFTMAX_C, ATTN_C], decls="\n".join(d for d in decls if d), body=body_text, off=off,
        terms=terms_text, n_terms=len(term_keys))
    timed = [{"name": "prefill", "kind": "prefill", "spec": None, "timer": 0, "node": 0}] + \
            [{"name": f"token{i}", "kind": "decode", "spec": None, "timer": i, "node": i} for i in range(1, n_gen)]
    kv = 2 * cfg.layers * T * D
    if keys_only:
        return model_keys
    if term_keys:
        timed = [{"name": "/".join(map(str, k)), "kind": k[0], "key": k, "spec": None, "timer": j, "node": j}
                 for j, k in enumerate(term_keys)]
        return Generated(src, 1 + max_prompt, 1, timed, total, act_bytes=total - kv)
    return Generated(src, 1 + max_prompt, n_gen, timed, total, act_bytes=total - kv)


def step_keys(model) -> list[tuple]:
    """The ops of one decode step in order, as term keys (``("linear", name)``, ``("attend", bits)``,
    ``("rmsnorm",)``, ...), ending with the argmax: what the token latency model sums."""
    return generate_llm(model, 1, 1, keys_only=True)


def prompt_input(tokens, max_prompt: int) -> bytes:
    """The model input of a prompt: its length, then its ids, zero-padded to 1 + max_prompt bytes."""
    ids = np.asarray(tokens, dtype=np.int64)
    if not 1 <= len(ids) <= max_prompt:
        raise BuildError(f"a prompt holds 1..{max_prompt} tokens, got {len(ids)}.")
    buf = np.zeros(1 + max_prompt, dtype=np.uint8)
    buf[0] = len(ids)
    buf[1:1 + len(ids)] = ids
    return buf.tobytes()


__all__ = ["generate_llm", "prompt_input"]
