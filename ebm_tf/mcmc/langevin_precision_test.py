"""The sampler under the 'mixed_bfloat16' layer policy: chains match float32 chains and the closed
form of ULA on a Gaussian, and the chain state, energies and update stay float32."""

import keras
import numpy as np
import tensorflow as tf

from ebm_tf.mcmc import langevin

# U(x) = E(x) / T with E(x) = T/2 ||a (x - mu)||^2: a Gaussian with mean mu and variance 1/a^2 per
# coordinate, whose ULA chains with step eps have the stationary law N(mu, s2 / (1 - eps^2/(4 s2)))
# with s2 = 1/a^2. The values are exact in bfloat16 (the bias -a mu included), so the closed form
# holds for the bfloat16 network up to the rounding of x and of the intermediate results.
_DIM = 8
_A = 2.0
_MU = np.array([-1.0, 0.5, 2.0, 3.0, -2.5, 0.0, 1.5, -0.25], np.float32)
_EPS = 0.25
_TEMPERATURE = 0.5
_CHAINS = 4096
_STEPS = 200  # Relaxation factor (1 - eps^2 a^2 / 2)^200 = 0.875^200 < 1e-11 from x0 = 0.


def _quadratic_energy(dtype):
  """E(x) = T/2 ||a (x - mu)||^2 as a Keras network: Dense(diag a, bias -a mu) -> T/2 sum(y^2).

  Under 'mixed_bfloat16' both layers compute in bfloat16 (float32 variables); the energy is cast
  to float32 by the sampler.
  """
  model = keras.Sequential([
      keras.Input((_DIM,)),
      keras.layers.Dense(_DIM, dtype=dtype, name="affine",
                         kernel_initializer=keras.initializers.Constant(_A * np.eye(_DIM)),
                         bias_initializer=keras.initializers.Constant(-_A * _MU)),
      keras.layers.Lambda(
          lambda y: (_TEMPERATURE / 2) * keras.ops.sum(keras.ops.square(y), axis=-1,
                                                       keepdims=True),
          dtype=dtype, name="half_sq_norm"),
  ])
  return model


class LangevinPrecisionTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.models = {p: _quadratic_energy(p) for p in ("float32", "mixed_bfloat16")}
    cls.x0 = tf.zeros([_CHAINS, _DIM])
    cls.runs, cls.results = {}, {}
    for precision, model in cls.models.items():
      run = tf.function(lambda x, model=model: langevin.langevin_sample(
          lambda x: model(x, training=False), x, tf.constant([5, 6], tf.int32),
          num_steps=_STEPS, step_size=_EPS, temperature=_TEMPERATURE))
      cls.runs[precision], cls.results[precision] = run, run(cls.x0)

  def test_the_network_really_computes_in_bfloat16(self):
    affine = self.models["mixed_bfloat16"].get_layer("affine")
    self.assertEqual(affine.compute_dtype, "bfloat16")
    self.assertEqual(affine.kernel.dtype, "float32")  # Keras keeps float32 master weights.
    self.assertEqual(affine(self.x0[:2]).dtype, tf.bfloat16)
    self.assertEqual(self.models["mixed_bfloat16"](self.x0[:2]).dtype, tf.bfloat16)

  def test_bfloat16_chains_match_float32_chains_and_the_closed_form(self):
    expected_var = (1.0 / _A**2) / (1.0 - _EPS**2 * _A**2 / 4.0)  # 0.2667; exact law 0.25.
    samples = {p: r.samples.numpy() for p, r in self.results.items()}
    n = _CHAINS * _DIM  # 32,768 independent draws (independent chains and coordinates).
    for precision, x in samples.items():
      z = (x - _MU) / np.sqrt(expected_var)  # N(0, 1) under the closed form.
      # Monte Carlo standard errors: mean 1/sqrt(n) = 0.0055; variance sqrt(2/n) = 0.0078.
      with self.subTest(precision=precision):
        self.assertLess(abs(z.mean()), 5.0 / np.sqrt(n))
        self.assertAllClose(z.var(), 1.0, atol=5.0 * np.sqrt(2.0 / n))  # 0.039
        # Per coordinate (4,096 draws each): 5 standard errors of the mean, 0.040.
        self.assertAllClose(x.mean(axis=0), _MU, atol=5.0 * np.sqrt(expected_var / _CHAINS))
        # The ULA bias (6.7% on the variance) is larger than the tolerance: the test sees the
        # discretisation, i.e. the chains are compared with ULA's law, not the exact one.
        self.assertGreater(np.mean((x - _MU)**2) / 0.25 - 1.0, 5.0 * np.sqrt(2.0 / n))
    # Paired chains (same seed, so the same noise) differ only through the bfloat16 rounding
    # inside the network (unit roundoff 2^-9 of x, |x| <= ~4.5, and of a (x - mu), |.| <= ~9):
    # a drift error of at most eps^2/2 * a * (2 * 2^-9 * 9) ~ 2e-3 per step, which the
    # contraction (1 - eps^2 a^2 / 2 = 7/8 per step) keeps below 8 x 2e-3 ~ 0.015 even if it
    # were fully systematic. Round-to-nearest is unbiased, so over 4,096 chains the means and
    # variances agree far better: a systematic error of even 7% of that bound (1e-3) fails.
    # (Measured: max |diff| 0.004, means 3e-5, pooled variance ratio 1 + 3e-6. A mutant loop
    # that stores the state in bfloat16 after every step gives max |diff| 0.035 and fails.)
    bf16, f32 = samples["mixed_bfloat16"], samples["float32"]
    self.assertLess(np.abs(bf16 - f32).max(), 0.02)
    self.assertGreater(np.abs(bf16 - f32).max(), 0.0)  # The bfloat16 network changed the chain.
    self.assertAllClose(bf16.mean(axis=0), f32.mean(axis=0), atol=1e-3)
    self.assertAllClose(bf16.var(axis=0) / f32.var(axis=0), np.ones(_DIM), atol=2e-3)

  def test_state_energies_and_update_stay_float32(self):
    run, result = self.runs["mixed_bfloat16"], self.results["mixed_bfloat16"]
    self.assertEqual(result.samples.dtype, tf.float32)
    self.assertEqual(result.energies.dtype, tf.float32)
    self.assertEqual(result.drift_norm.dtype, tf.float32)
    self.assertEqual(result.acceptance_rate.dtype, tf.float32)
    graph = run.get_concrete_function(self.x0).graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    self.assertLen(loops, 1)
    # Nothing the loop carries (step, chain state, drift norm, captures) is bfloat16.
    self.assertNotIn(tf.bfloat16, [t.dtype for t in loops[0].outputs])
    self.assertIn(tf.float32, [t.dtype for t in loops[0].outputs])
    body_name = loops[0].get_attr("body").name
    body = next(f for f in graph.as_graph_def().library.function
                if f.signature.name == body_name)
    bf16 = tf.bfloat16.as_datatype_enum
    model_name = self.models["mixed_bfloat16"].name
    in_bf16 = [n for n in body.node_def if n.attr["T"].type == bf16 or
               (n.op == "Cast" and n.attr["DstT"].type == bf16)]
    self.assertNotEmpty([n for n in in_bf16 if n.op == "MatMul"])  # The network's matmuls.
    # Outside the network's forward and backward pass only the slice of its [B, 1] output and
    # the casts around it are bfloat16: the update x - eps^2/2 g + eps xi, the noise and the
    # drift norm are float32.
    outside = {n.op for n in in_bf16 if model_name not in n.name}
    self.assertContainsSubset(outside, {"Cast", "StridedSlice", "StridedSliceGrad"})
    update_ops = [n for n in body.node_def if model_name not in n.name and
                  n.op in ("Sub", "AddV2", "Mul", "StatelessRandomNormalV2")]
    self.assertNotEmpty(update_ops)
    self.assertTrue(all(n.attr["T"].type != bf16 and n.attr["dtype"].type != bf16
                        for n in update_ops))
    # The gradient the update uses is float32.
    x = tf.constant(self.x0[:3])
    with tf.GradientTape() as tape:
      tape.watch(x)
      energy = tf.reduce_sum(tf.cast(self.models["mixed_bfloat16"](x), tf.float32))
    self.assertEqual(tape.gradient(energy, x).dtype, tf.float32)


if __name__ == "__main__":
  tf.test.main()
