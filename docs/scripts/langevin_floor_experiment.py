"""Is the bench's floor a floor? Its K independent passes overlap under parallel_iterations=10.

  .venv/bin/python docs/scripts/langevin_floor_experiment.py small_digits 64 100 9
      (net, batch, K, rounds; docs/benchmarks.md "The floor was not a floor")

Times, interleaved: the sampler, the paper's loop, and the floor with parallel_iterations 10
(independent passes), 1, and 10 with each pass fed the previous one's output.
"""
import json
import os
import statistics
import sys
import time
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_ROOT, "bench")); sys.path.insert(0, _ROOT)
from ebm_tf import tf_noise  # noqa
import tensorflow as tf
import langevin_bench as lb
from ebm_tf import langevin, models
net = sys.argv[1]; batch = int(sys.argv[2]); K = int(sys.argv[3])
name, shape, kw = lb.NETS[net]
m = models.build_ebm(name, shape, **kw); e = models.energy_fn(m)
x = tf.random.stateless_uniform([batch, *shape], [0, batch], minval=-1.0, maxval=1.0)
seed = tf.constant([1, 2], tf.int32); T = lb.TEMPERATURE; EPS = lb.EPSILON
samp = langevin.make_sampler(e, shape)
def mk_floor(par, dep):
  @tf.function
  def f(x, k):
    def body(i, x, acc):
      with tf.GradientTape() as tape:
        tape.watch(x); en = tf.reduce_sum(e(x)) / T
      g = tape.gradient(en, x)
      if dep: x = x - 1e-30 * g
      return i + 1, x, acc + g
    return tf.while_loop(lambda i, *_: i < k, body, (tf.constant(0), x, tf.zeros_like(x)), parallel_iterations=par)[2]
  return f
base = lb.make_langevin_update(e, K, EPS, T)
fl10 = mk_floor(10, False); fl1 = mk_floor(1, False); fldep = mk_floor(10, True)
fns = {"sampler": lambda: samp(x, seed, K, EPS, T).samples.numpy(),
       "baseline": lambda: base(x)[0].numpy(),
       "floor_par10": lambda: fl10(x, K).numpy(),
       "floor_par1": lambda: fl1(x, K).numpy(),
       "floor_dependent": lambda: fldep(x, K).numpy()}
for f in fns.values(): f(); f()
t = {k: [] for k in fns}
for r in range(int(sys.argv[4]) if len(sys.argv) > 4 else 9):
  for k, f in fns.items():
    b = time.perf_counter(); f(); t[k].append((time.perf_counter() - b) / K * 1e3)
med = {k: statistics.median(v) for k, v in t.items()}
mn = {k: min(v) for k, v in t.items()}
print(net, batch, K, os.getloadavg())
for k in fns: print(f"  {k:16s} median {med[k]:8.2f} ms/step  min {mn[k]:8.2f}")
