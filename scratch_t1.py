import time
from mpq.models import tinyllama as T
m, sp, src = T.trained_model()
print("float ppl val", T.float_perplexity(m, sp["val"]))
im = T.build_integer(m, sp["train"])
t=time.time()
print("int ppl val", im.perplexity(sp["val"]), time.time()-t)
print("acc", im.next_token_accuracy(sp["val"]))
for sch in [(8,4),(4,4),(4,2),(8,2)]:
    print(sch, T.build_integer(m, sp["train"], sch).perplexity(sp["val"]))
p = T.encode("Once upon a time, ")
print(repr(T.decode(im.generate(p, 32))))
