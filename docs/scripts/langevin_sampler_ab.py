"""A/B of two versions of the sampler (bitwise check + speed) beside the paper's loop.

  git show a33862c^:ebm_tf/mcmc/langevin.py > /tmp/langevin_old.py
  .venv/bin/python docs/scripts/langevin_sampler_ab.py 7 /tmp/langevin_old.py

Per net x batch: whether both give bitwise the same samples and drift norm, and the median ms
per step (interleaved rounds) of the old sampler, the current one, the paper's loop, and the
current `langevin_sample` traced for one static batch (docs/benchmarks.md "Sampler changes").
"""
import importlib.util
import os
import statistics
import sys
import time
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_ROOT, "bench")); sys.path.insert(0, _ROOT)
from ebm_tf.internal import tf_noise  # noqa
import tensorflow as tf
import langevin_bench as lb
from ebm_tf.mcmc import langevin as new
from ebm_tf import models
spec = importlib.util.spec_from_file_location("langevin_old", sys.argv[2])
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
rounds = int(sys.argv[1])
for net, batch, K in [("small_digits", 1, 200), ("small_digits", 8, 200), ("small_digits", 64, 100),
                      ("small_digits", 256, 30), ("small_fmnist", 8, 20), ("small_fmnist", 64, 4)]:
  name, shape, kw = lb.NETS[net]
  m = models.build_ebm(name, shape, **kw); e = models.energy_fn(m)
  x = tf.random.stateless_uniform([batch, *shape], [0, batch], minval=-1.0, maxval=1.0)
  seed = tf.constant([1, 2], tf.int32); T = lb.TEMPERATURE; EPS = lb.EPSILON
  so, sn = old.make_sampler(e, shape), new.make_sampler(e, shape)
  base = lb.make_langevin_update(e, K, EPS, T)
  static = tf.function(lambda x: new.langevin_sample(e, x, seed, num_steps=K, step_size=EPS, temperature=T).samples)
  ro, rn = so(x, seed, K, EPS, T), sn(x, seed, K, EPS, T)
  same = bool(tf.reduce_all(ro.samples == rn.samples)) and float(ro.drift_norm) == float(rn.drift_norm)
  fns = {"old": lambda: so(x, seed, K, EPS, T).samples.numpy(),
         "new": lambda: sn(x, seed, K, EPS, T).samples.numpy(),
         "baseline": lambda: base(x)[0].numpy(),
         "static": lambda: static(x).numpy()}
  for f in fns.values(): f()
  t = {k: [] for k in fns}
  for r in range(rounds):
    for k, f in fns.items():
      b = time.perf_counter(); f(); t[k].append((time.perf_counter() - b) / K * 1e3)
  med = {k: statistics.median(v) for k, v in t.items()}
  print(f"{net} b{batch} K{K} bitwise_same={same} load={os.getloadavg()[0]:.1f} " +
        " ".join(f"{k}={v:.3f}" for k, v in med.items()) +
        f"  new/old speed={med['old']/med['new']:.3f} new/baseline speed={med['baseline']/med['new']:.3f} static/baseline speed={med['baseline']/med['static']:.3f}", flush=True)
