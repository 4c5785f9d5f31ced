"""Where the bfloat16 sampler loses against the bfloat16 paper loop (small_fmnist, batch 64).

  .venv/bin/python docs/scripts/bf16_sampler_gap.py [rounds]

Paired, shuffled rounds (as bench/langevin_bench.py --mode=paired) of, all under the
mixed_bfloat16 policy: make_sampler (dynamic batch), make_sampler(static_batch=True), the same
langevin_sample traced with every setting constant, and the paper's loop. Prints the median of
the per-round time ratios to the paper's loop (docs/benchmarks.md, the AVX512_BF16 section).
"""
import os
import statistics
import sys
import time
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_ROOT, "bench")); sys.path.insert(0, _ROOT)
import numpy as np
import tensorflow as tf
import langevin_bench as lb
from ebm_tf.mcmc import langevin
from ebm_tf import models

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 11
name, shape, kw = lb.NETS["small_fmnist"]
for precision in ("float32", "mixed_bfloat16"):
  e = models.energy_fn(models.build_ebm(name, shape, dtype=precision, **kw))
  x = tf.random.stateless_uniform([64, *shape], [0, 64], minval=-1.0, maxval=1.0)
  seed = tf.constant([1, 2], tf.int32); K = 10; EPS, T = lb.EPSILON, lb.TEMPERATURE
  dyn = langevin.make_sampler(e, shape)
  stb = langevin.make_sampler(e, shape, static_batch=True)
  const = tf.function(lambda x: langevin.langevin_sample(e, x, seed, num_steps=K, step_size=EPS,
                                                        temperature=T).samples)
  base = lb.make_langevin_update(e, K, EPS, T)
  fns = {"dynamic": lambda: dyn(x, seed, K, EPS, T).samples.numpy(),
         "static_batch": lambda: stb(x, seed, K, EPS, T).samples.numpy(),
         "all_constant": lambda: const(x).numpy(), "baseline": lambda: base(x)[0].numpy()}
  for f in fns.values():
    f(); f()
  t = {k: [] for k in fns}
  rng = np.random.default_rng(0); order = list(fns)
  for _ in range(rounds):
    rng.shuffle(order)
    for k in order:
      b = time.perf_counter(); fns[k](); t[k].append(time.perf_counter() - b)
  print(precision, f"load {os.getloadavg()[0]:.1f}", " ".join(
      f"{k}: {statistics.median(v) / K * 1e3:.1f} ms, time/baseline "
      f"{statistics.median(np.array(v) / np.array(t['baseline'])):.2f};" for k, v in t.items()),
      flush=True)
