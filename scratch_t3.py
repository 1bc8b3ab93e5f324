from harness import registry
from mpq.models import tinyllama as T
from mpq.llm_deploy import run_tokens
m, sp, src = T.trained_model()
t = registry.get("host")
txt = T.encode("Once upon a time")
prompts = [txt[:k] for k in (3, 9, 16)]
for sch in [(8,4),(4,8),(2,8)]:
    im = T.build_integer(m, sp["train"], sch)
    r = run_tokens(im, t, prompts, 4)
    print(sch, r.bit_exact, r.device.tolist(), r.reference.tolist())
