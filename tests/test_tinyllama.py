"""tinyllama: integer LLM ops, the integer model against the float one, and the generated C token
loop bit-exact on the host (32 greedy tokens from 3 prompts, a mixed per-layer scheme)."""

import json
import math

import numpy as np
import pytest
import torch

from harness.errors import BuildError, UserError
from helpers.models import need_target
from kernels.ir import llm as L
from mpq.llm_deploy import run_tokens
from mpq.models import tinyllama as T

torch.set_num_threads(1)
PROMPTS = ["Once upon a ", "Tom", "The cat was"]


@pytest.fixture(scope="module")
def trained():
    # a short training run is enough for the equality tests (the benchmark trains longer)
    return T.trained_model(steps=120)


def mixed_scheme(cfg):
    rng = np.random.default_rng(3)
    pairs = [(8, 8), (8, 4), (4, 8), (4, 4), (8, 2)]
    return [pairs[int(rng.integers(len(pairs)))] for _ in T.linear_names(cfg)]


def test_isqrt_is_exact_floor_sqrt():
    rng = np.random.default_rng(0)
    v = np.concatenate([np.arange(0, 5000), rng.integers(0, 2**40, 5000), [2**36 - 1, 2**36, 2**31, 2**31 - 1]])
    want = np.array([math.isqrt(int(x)) for x in v])
    np.testing.assert_array_equal(L.isqrt(v), want)


def test_rmsnorm_rope_against_float():
    rng = np.random.default_rng(1)
    h = rng.integers(-3000, 3000, (50, 64))
    n = L.rmsnorm(h) / 2**L.NORM_FRAC
    ref = h / np.sqrt((h.astype(float) ** 2).mean(-1, keepdims=True))
    assert np.abs(n - ref).max() < 2e-3      # normalised floor isqrt: relative error < 2^-12 (docs/formats.md)
    cos, sin = L.rope_tables(8, 16)
    x = rng.integers(-90, 90, (3, 8, 64))
    y = L.rope(x, np.arange(8), cos, sin, 4).astype(float)
    ang = np.arange(8)[:, None] * 10000.0 ** (-2 * np.arange(8) / 16)
    xs = x.reshape(3, 8, 4, 2, 8).astype(float)
    a, b = xs[..., 0, :], xs[..., 1, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    ref = np.stack([a * c - b * s, a * s + b * c], -2).reshape(x.shape)
    assert np.abs(y - ref).max() <= 0.5 + 128 * 2 ** -14


def test_integer_model_tracks_the_float_model(trained):
    model, sp, _ = trained
    im = T.build_integer(model, sp["train"])
    f = T.float_perplexity(model, sp["val"], max_windows=16)
    i = im.perplexity(sp["val"], max_windows=16)
    assert i < f * 1.05, (f, i)


def test_generated_c_tokens_equal_the_integer_model_on_host(trained):
    model, sp, _ = trained
    im = T.build_integer(model, sp["train"], mixed_scheme(model.cfg))
    run = run_tokens(im, need_target("host"), [T.encode(p) for p in PROMPTS], 32)
    np.testing.assert_array_equal(run.device, run.reference)
    assert run.reference.shape == (3, 32)
    assert (run.times > 0).all()


def test_ternary_weights_run_on_the_2_bit_kernels_bit_exact(trained):
    model, sp, _ = trained
    im = T.build_integer(model, sp["train"], [(8, 2)] * 14 + [(8, 8)], ternary=True)
    assert set(np.unique(im.blocks[0].w1.weight)) <= {-1, 0, 1}
    run = run_tokens(im, need_target("host"), [T.encode("Tom")], 8)
    np.testing.assert_array_equal(run.device, run.reference)


def test_bad_prompts_and_schemes_are_refused_in_one_sentence(trained):
    model, sp, _ = trained
    im = T.build_integer(model, sp["train"])
    with pytest.raises(BuildError, match="a prompt holds 1..16 tokens, got 20"):
        run_tokens(im, need_target("host"), [np.zeros(20, np.int64)], 4)
    with pytest.raises(UserError, match="one per linear layer"):
        T.build_integer(model, sp["train"], [(8, 8)] * 3)
    with pytest.raises(UserError, match="qa in"):
        T.build_integer(model, sp["train"], (3, 8))
    with pytest.raises(UserError, match="exceeds the context"):
        im.generate(np.zeros(60, np.int64), 10)
    with pytest.raises(UserError, match="does not exist"):
        T.load_corpus("/nonexistent/tinystories.txt")


def test_search_explores_per_layer_schemes_on_the_validation_split(trained):
    model, sp, _ = trained
    cfg = model.cfg
    from mpq.evaluate import bops_latency

    full = sum(s.bops for s in T.linear_specs(cfg, None))
    res = T.search_scheme(model, sp, bops_latency, budget=0.75 * full, n_evals=3, max_windows=2)
    assert res.evaluations >= 1 and res.best is not None
    assert all(c.latency <= 0.75 * full for c in res.candidates)
    assert len(res.best.bits) == len(T.linear_names(cfg)) and 0 < res.best.accuracy <= 1


def test_torch_twins_equal_the_numpy_ops():
    rng = np.random.default_rng(5)
    h = rng.integers(-32768, 32768, (7, 5, 64))
    th = torch.from_numpy(h)
    assert torch.equal(T.torch_rmsnorm(th), torch.from_numpy(L.rmsnorm(h)))
    n = L.rmsnorm(h)
    assert torch.equal(T.torch_requant_codes(torch.from_numpy(n), 1234567890, 40, 4),
                       torch.from_numpy(L.requant_codes(n, 1234567890, 40, 4)))
    y = rng.integers(-2**20, 2**20, (7, 5, 64))
    m, s = rng.integers(2**30, 2**31, 64), rng.integers(20, 40, 64)
    assert torch.equal(T.torch_resadd(th, torch.from_numpy(y), m, s), torch.from_numpy(L.resadd(h, y, m, s)))
    cos, sin = L.rope_tables(8, 16)
    x = rng.integers(-128, 128, (3, 8, 64))
    assert torch.equal(T.torch_rope(torch.from_numpy(x), torch.arange(8), cos, sin, 4),
                       torch.from_numpy(L.rope(x, np.arange(8), cos, sin, 4)))
    table = rng.integers(-128, 128, (96, 64)).astype(np.int8)
    tok = rng.integers(0, 96, (4, 9))
    assert torch.equal(T.torch_embed(table, torch.from_numpy(tok), 1500000000, 25),
                       torch.from_numpy(L.embed(table, tok, 1500000000, 25)))


def test_token_latency_model_prices_every_op_of_the_step(trained):
    from mpq.llm_deploy import measure_op_terms, predict_step
    from mpq.models.tinyllama import linear_specs

    model, sp, _ = trained
    im = T.build_integer(model, sp["train"], mixed_scheme(model.cfg))
    t = need_target("host")
    s = t.open(t.build())
    try:
        ops = measure_op_terms(im, s, t, lens=(2, 20))
    finally:
        s.close()
    kinds = {k[0] for k in ops}
    assert kinds == {"embed", "rmsnorm", "requant", "rope", "attend", "resadd", "swiglu", "argmax"}
    lin = {spec: 1000.0 for spec in linear_specs(im.cfg, im.scheme)}
    p = predict_step(im, ops, lin, pos=10)
    assert p["parts"]["linear"] == 1000.0 * len(im.linears)
    assert p["total"] == pytest.approx(sum(p["parts"].values()))


def test_a_local_tinystories_file_is_the_corpus_when_given(tmp_path, monkeypatch):
    f = tmp_path / "TinyStories-valid.txt"
    f.write_text("Once upon a time, there was a little girl named Lily. She liked to play.\n" * 200)
    text, source = T.load_corpus(f)
    assert source == "file:TinyStories-valid.txt" and text.startswith("Once upon")
    monkeypatch.setenv("MICO_TINYSTORIES", str(f))
    assert T.load_corpus()[1] == "file:TinyStories-valid.txt"
    monkeypatch.delenv("MICO_TINYSTORIES")
    assert T.load_corpus()[1] == "generated"
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(UserError, match="needs at least 10,000"):
        T.load_corpus(tmp_path / "short.txt")


def test_mico_llm_search_then_run_on_host(tmp_path, trained):
    from mico_cli import mico

    out = tmp_path / "llm.json"
    mico("llm", "search", "--steps", 120, "--budget-evals", 2, "--latency-budget", "80%", "-o", out)
    doc = json.loads(out.read_text())
    assert len(doc["scheme"]) == 15 and doc["test"]["integer_perplexity"] > 1
    r = mico("llm", "run", "--steps", 120, "--scheme", out, "--tokens", 6, "--no-predict", "--prompt", "Tom")
    assert "bit-exact: every token equals" in r.stdout
    bad = mico("llm", "run", "--steps", 120, "--bits", "8x3", check=False)
    assert bad.returncode != 0 and "qw in (2, 4, 8), got 8x3" in bad.stderr and "Traceback" not in bad.stderr
    bad = mico("llm", "run", "--steps", 120, "--scheme", tmp_path / "nope.json", check=False)
    assert bad.returncode != 0 and "is not a tinyllama scheme file" in bad.stderr
