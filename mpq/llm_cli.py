"""`mico llm`: the tiny LLaMA end to end -- search a per-layer scheme, run the generated token loop.

``mico llm search`` explores one (qa, qw) per linear layer with the project's searchers
(objective: next-token accuracy on the validation split; cost: a fitted layer proxy of the
target, ``--proxy``, else the analytic CBOPs count) and writes the scheme as JSON with the
test-split perplexity of the float and the integer model.  ``mico llm run`` generates the C
token loop for a scheme, runs prompts on a target and checks every token against the
integer model, with per-token latency measured and predicted (the token latency model,
docs/ir.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from harness.documents import atomic_write
from harness.errors import UserError


def _parse_scheme(text: str | None, path: str | None):
    if path:
        try:
            doc = json.loads(Path(path).read_text())
            return [tuple(int(v) for v in p) for p in doc["scheme"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{path} is not a tinyllama scheme file written by `mico llm search`.") from None
    if not text:
        return None
    try:
        a, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--bits {text!r} is not QAxQW like 8x4.") from None
    return (a, w)


@click.group("llm")
def llm():
    """The tiny LLaMA: scheme search and the generated token loop on a target."""


@llm.command("search")
@click.option("--corpus", type=click.Path(), default=None,
              help="A TinyStories text file (default: $MICO_TINYSTORIES, else the generated corpus).")
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True, help="Float training steps.")
@click.option("--proxy", "proxy_path", type=click.Path(), default=None,
              help="Layer proxy JSON of the target (`mico fit --mode layer`); without it: analytic CBOPs.")
@click.option("--latency-budget", default="70%", show_default=True,
              help="Absolute cost in the proxy's unit, or a percentage of the all-8x8 scheme's.")
@click.option("--searcher", default="random", show_default=True)
@click.option("--budget-evals", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="tinyllama-scheme.json", show_default=True)
def search(corpus, steps, proxy_path, latency_budget, searcher, budget_evals, seed, output):
    """Search one (qa, qw) per linear layer of tinyllama under a latency budget."""
    from .cli import load_latency
    from .models import tinyllama as T

    latency_fn, unit, proxy_used = load_latency(proxy_path)
    model, sp, source = T.trained_model(corpus_path=corpus, steps=steps, seed=seed)
    full = float(latency_fn(T.linear_specs(model.cfg, None))[1])
    text = str(latency_budget).strip()
    try:
        budget = full * float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UserError(f"--latency-budget {latency_budget!r} is not a number or a percentage.") from None
    res = T.search_scheme(model, sp, latency_fn, budget, n_evals=budget_evals, seed=seed, searcher=searcher)
    if res.best is None:
        raise UserError("no scheme fits the latency budget; raise --latency-budget.")
    best = [list(p) for p in res.best.bits]
    im = T.build_integer(model, sp["train"], best)
    doc = {"format": "mico-llm-scheme", "version": 1, "model": "tinyllama", "corpus": source, "steps": steps,
           "seed": seed, "layers": T.linear_names(model.cfg), "scheme": best,
           "latency": {"unit": unit, "proxy": proxy_used, "predicted_linears": res.best.latency, "budget": budget,
                       "all_8x8": full},
           "validation_next_token_accuracy": res.best.accuracy,
           "test": {"float_perplexity": T.float_perplexity(model, sp["test"]),
                    "integer_perplexity": im.perplexity(sp["test"]),
                    "integer_next_token_accuracy": im.next_token_accuracy(sp["test"])},
           "evaluations": res.evaluations, "pareto": [c.to_dict() for c in res.pareto]}
    atomic_write(Path(output), json.dumps(doc, indent=2))
    click.echo(f"tinyllama ({source} corpus): {res.evaluations} schemes, best "
               + " ".join(f"{a}x{w}" for a, w in best))
    click.echo(f"cost {res.best.latency:.6g} {unit} of {budget:.6g} (all-8x8 {full:.6g}); test perplexity float "
               f"{doc['test']['float_perplexity']:.4f}, integer {doc['test']['integer_perplexity']:.4f}")
    click.echo(f"wrote {output}")


@llm.command("run")
@click.option("--target", "target_name", default="host", show_default=True)
@click.option("--param", "params", multiple=True, help="Target parameter KEY=VALUE (e.g. mem_kib=1024).")
@click.option("--prompt", "prompts", multiple=True, default=("Once upon a ",), show_default=True)
@click.option("--tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-prompt", type=click.IntRange(min=1, max=255), default=16, show_default=True)
@click.option("--bits", default=None, help="One QAxQW for every layer (default 8x8).")
@click.option("--scheme", "scheme_path", type=click.Path(), default=None, help="A `mico llm search` scheme file.")
@click.option("--corpus", type=click.Path(), default=None)
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True)
@click.option("--predict/--no-predict", default=True, show_default=True,
              help="Also measure the latency model's terms on the target and predict every token.")
@click.option("--json", "as_json", is_flag=True)
def run(target_name, params, prompts, tokens, max_prompt, bits, scheme_path, corpus, steps, predict, as_json):
    """Generate tokens with the generated C on a target, bit-exact against the integer model."""
    from harness import registry
    from harness.measure import measure_layer
    from harness.params import parse_assignments

    from .llm_deploy import measure_op_terms, predict_step, run_tokens
    from .models import tinyllama as T

    scheme = _parse_scheme(bits, scheme_path)
    model, sp, source = T.trained_model(corpus_path=corpus, steps=steps)
    im = T.build_integer(model, sp["train"], scheme)
    ids = [T.encode(p) for p in prompts]
    t = registry.get(target_name, **parse_assignments(params))
    r = run_tokens(im, t, ids, tokens, max_prompt)
    out = {"target": target_name, "corpus": source, "bit_exact": r.bit_exact, "unit": r.unit,
           "prompts": list(prompts), "text": [T.decode(d) for d in r.device],
           "reference_text": [T.decode(d) for d in r.reference], "times": r.times.tolist()}
    if predict and tokens > 1:
        b = t.build()
        s = t.open(b)
        try:
            lin = {spec: measure_layer(s, t, spec, b.fingerprint, t.deterministic).median
                   for spec in set(T.linear_specs(im.cfg, im.scheme))}
            ops = measure_op_terms(im, s, t)
        finally:
            s.close()
        out["predicted"] = [[predict_step(im, ops, lin, len(p) - 1 + i)["total"] for i in range(1, tokens)]
                            for p in ids]
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        for p, txt, ref in zip(prompts, out["text"], out["reference_text"]):
            click.echo(f"{p!r} -> {txt!r}" + ("" if txt == ref else f"  (integer model: {ref!r})"))
        click.echo("bit-exact: every token equals the integer model's" if r.bit_exact
                   else "NOT bit-exact: the target's tokens differ from the integer model's")
        med = float(np.median(r.times[:, 1:])) if tokens > 1 else float("nan")
        line = f"decode: {med:.0f} {r.unit} per token (median)"
        if "predicted" in out:
            pm = float(np.median(np.asarray(out["predicted"])))
            line += f", predicted {pm:.0f} ({100 * (pm - med) / med:+.1f}%)"
        click.echo(line)
    if not r.bit_exact:
        raise SystemExit(1)
