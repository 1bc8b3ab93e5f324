"""Run the generated tinyllama token loop on a target and check its tokens against the integer model.

Reuses the deploy machinery of every model: ``codegen.compile_image`` with the
target's model toolchain, ``mpq.memory.check_fits`` (a model that does not fit
is refused in one sentence naming the ``mem_kib`` that would), and the
firmware's LOAD_MODEL / RUN_MODEL.  One RUN_MODEL is one prompt: prefill and
``n_gen`` greedy tokens; the per-step timers are the per-token latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import MeasureError, UserError
from kernels.ir import codegen
from kernels.ir.llm_codegen import generate_llm, prompt_input, step_keys


@dataclass
class TokenRun:
    prompts: list            # token ids per prompt
    device: np.ndarray       # (prompts, n_gen) tokens from the target
    reference: np.ndarray    # (prompts, n_gen) tokens of the integer model
    times: np.ndarray        # (prompts, n_gen): [prefill + first token, decode steps ...]
    unit: str
    image_bytes: int
    scratch_bytes: int

    @property
    def bit_exact(self) -> bool:
        return bool(np.array_equal(self.device, self.reference))


def build_image(model, target, n_gen: int, max_prompt: int):
    gen = generate_llm(model, n_gen, max_prompt)
    return gen, codegen.compile_image(gen, target.model_toolchain())


def run_tokens(model, target, prompts, n_gen: int, max_prompt: int = 16) -> TokenRun:
    """Generate ``n_gen`` tokens after each prompt on ``target`` (booted here) and beside them the
    integer model's; the caller compares (``TokenRun.bit_exact``)."""
    from .memory import check_fits, model_memory

    if not target.capabilities().model_images:
        raise UserError(f"target {target.name} cannot run generated C models.")
    prompts = [np.asarray(p, dtype=np.int64) for p in prompts]
    inputs = [prompt_input(p, max_prompt) for p in prompts]       # refuses a bad prompt before booting
    gen, image = build_image(model, target, n_gen, max_prompt)
    ref = np.stack([model.generate(p, n_gen) for p in prompts])
    s = target.open(target.build())
    try:
        check_fits(model_memory(gen, image), s.hello, target.name, getattr(target, "mem_kib", None))
        info = s.load_model(image)
        info = info if isinstance(info, dict) else vars(info)
        if info["in_count"] != gen.in_count or info["out_count"] != n_gen:
            raise UserError("the loaded model's input/output sizes differ from the generated ones; regenerate it.")
        dev = np.zeros((len(prompts), n_gen), np.int64)
        times = np.zeros((len(prompts), n_gen), np.float64)
        for i, x in enumerate(inputs):
            r = s.run_model(x)
            if len(r.outputs) != n_gen or len(r.layers) != n_gen:
                raise MeasureError(f"the device returned {len(r.outputs)} tokens and {len(r.layers)} times; "
                                   f"the model has {n_gen}")
            dev[i] = r.outputs
            times[i] = r.layers
        unit = s.hello.timer_unit
    finally:
        s.close()
    return TokenRun(prompts, dev, ref, times, unit, len(image), gen.scratch_bytes)


# ---- per-token latency model ------------------------------------------------------------------

def measure_op_terms(model, session, target, lens=(4, 32, 60)) -> dict:
    """Cycles of every distinct non-linear op of the decode step, each run warm then timed in a
    term image (attention at each cache length of ``lens``); returns {key: cycles}."""
    gen = generate_llm(model, 1, 1, term_lens=list(lens))
    image = codegen.compile_image(gen, target.model_toolchain())
    session.load_model(image)
    r = session.run_model(prompt_input([1], 1))
    return {t["key"]: float(v) for t, v in zip(gen.timed_layers, r.layers)}


def predict_step(model, op_terms: dict, linear_terms: dict, pos: int) -> dict:
    """Predicted cycles of the decode step at ``pos`` (the step's ops in order, each priced by its
    term; attention linear in the cache length between the measured lengths) + the argmax."""
    from mpq.models.tinyllama import linear_specs

    fits = {}
    for k in {k[:-1] for k in op_terms if k[0] == "attend"}:
        pts = sorted((kk[-1], v) for kk, v in op_terms.items() if kk[:-1] == k)
        xs, ys = np.array([a for a, _ in pts], float), np.array([v for _, v in pts], float)
        fits[k] = tuple(np.polyfit(xs, ys, 1)) if len(xs) > 1 else (0.0, float(ys[0]))
    specs = dict(zip([op.name for op in model.linears], linear_specs(model.cfg, model.scheme)))
    total, parts = 0.0, {"linear": 0.0}
    for key in step_keys(model):
        if key[0] == "linear":
            c = float(linear_terms[specs[key[1]]])
            parts["linear"] += c
        elif key[0] == "attend":
            slope, icept = fits[key]
            c = float(icept + slope * (pos + 1))
            parts["attend"] = parts.get("attend", 0.0) + c
        else:
            c = float(op_terms[key])
            parts[key[0]] = parts.get(key[0], 0.0) + c
        total += c
    return {"total": total, "parts": parts}
