"""Tests for ebm_tf.mcmc.langevin against independent oracles: TFP's Langevin kernel, closed-form
stationary laws of unadjusted Langevin on Gaussians, and exact moments of a 2-D mixture (MALA)."""

import keras
import numpy as np
from absl.testing import parameterized
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from ebm_tf.mcmc import langevin


def _mlp_energy(seed):
  """A small random Keras MLP energy on x [B, 2] with a [B, 1] output (squeezed by the sampler)."""
  model = keras.Sequential([
      keras.Input((2,)),
      keras.layers.Dense(16, activation="tanh",
                         kernel_initializer=keras.initializers.GlorotNormal(seed=seed),
                         bias_initializer=keras.initializers.RandomNormal(seed=seed + 1)),
      keras.layers.Dense(1, use_bias=False,
                         kernel_initializer=keras.initializers.GlorotNormal(seed=seed + 2)),
  ])
  return lambda x: model(x, training=False)


def _conv_energy(seed, image_shape):
  """A small random Keras conv energy on NHWC images."""
  model = keras.Sequential([
      keras.Input(image_shape),
      keras.layers.Conv2D(3, 3, padding="same", activation="softplus",
                          kernel_initializer=keras.initializers.GlorotNormal(seed=seed)),
      keras.layers.Flatten(),
      keras.layers.Dense(1, use_bias=False,
                         kernel_initializer=keras.initializers.GlorotNormal(seed=seed + 1)),
  ])
  return lambda x: model(x, training=False)


def _sum_sq(x):
  return tf.reduce_sum(tf.square(x), axis=list(range(1, x.shape.rank)))


def _tfp_noise(shape, seed, eps):
  """The standard normal draw TFP's UncalibratedLangevin makes with `seed`, read off a flat target.

  On log p = 0 the proposal from 0 is exactly sqrt(eps^2) * xi; eps is a power of two, so
  dividing by it is exact.
  """
  kernel = tfp.mcmc.UncalibratedLangevin(target_log_prob_fn=lambda x: 0.0 * _sum_sq(x),
                                         step_size=eps**2)
  zeros = tf.zeros(shape)
  proposal, _ = kernel.one_step(zeros, kernel.bootstrap_results(zeros), seed=seed)
  return proposal / eps


# A 2-component Gaussian mixture in 2-D with exact moments (for the MALA test).
_MIX_WEIGHTS = np.array([0.3, 0.7])
_MIX_MEANS = np.array([[-1.0, 0.5], [1.0, -0.5]])
_MIX_COVS = np.array([[[0.3, 0.1], [0.1, 0.5]], [[0.5, -0.2], [-0.2, 0.4]]])


def _mixture_energy(x):
  """-log density of the mixture at x [B, 2] -> [B] (normalised)."""
  precisions = np.linalg.inv(_MIX_COVS)
  log_dets = np.log(np.linalg.det(_MIX_COVS))
  terms = []
  for k in range(2):
    d0 = x[:, 0] - _MIX_MEANS[k, 0]
    d1 = x[:, 1] - _MIX_MEANS[k, 1]
    mahalanobis = (precisions[k, 0, 0] * d0 * d0 + 2.0 * precisions[k, 0, 1] * d0 * d1 +
                   precisions[k, 1, 1] * d1 * d1)
    terms.append(np.log(_MIX_WEIGHTS[k]) - 0.5 * log_dets[k] - np.log(2 * np.pi) -
                 0.5 * mahalanobis)
  return -tf.reduce_logsumexp(tf.stack(terms, axis=1), axis=1)


def _mixture_moments():
  mean = _MIX_WEIGHTS @ _MIX_MEANS
  second = sum(w * (c + np.outer(m, m)) for w, m, c in zip(_MIX_WEIGHTS, _MIX_MEANS, _MIX_COVS))
  p_right = sum(w * stats.norm.sf(0.0, m[0], np.sqrt(c[0, 0]))
                for w, m, c in zip(_MIX_WEIGHTS, _MIX_MEANS, _MIX_COVS))
  return mean, second - np.outer(mean, mean), p_right


class LangevinTest(tf.test.TestCase, parameterized.TestCase):

  # 1. Oracle: tfp.mcmc.UncalibratedLangevin with step_size = eps^2 and target -U.
  @parameterized.named_parameters(
      dict(testcase_name="mlp_2d", shape=(5, 2), eps=0.5, temperature=0.5, tau=None),
      dict(testcase_name="conv_images_tau", shape=(3, 4, 4, 2), eps=0.125, temperature=0.1,
           tau=0.8),
  )
  def test_matches_tfp_uncalibrated_langevin(self, shape, eps, temperature, tau):
    energy_fn = (_mlp_energy(11) if len(shape) == 2 else _conv_energy(11, shape[1:]))

    def neg_potential(x):
      u = tf.reshape(energy_fn(x), [-1]) / temperature
      if tau:
        u += _sum_sq(x) / (2.0 * tau**2)
      return -u

    kernel = tfp.mcmc.UncalibratedLangevin(target_log_prob_fn=neg_potential, step_size=eps**2)
    x0 = tf.random.stateless_uniform(shape, seed=[1, 2], minval=-1.0, maxval=1.0)
    num_steps = 3
    step_seeds = [tf.constant([7, t], tf.int32) for t in range(num_steps)]
    noises = tf.stack([_tfp_noise(shape, s, eps) for s in step_seeds])
    self.assertGreater(float(tf.math.reduce_std(noises)), 0.5)  # The trick really reads noise.

    expected = x0
    for t in range(num_steps):
      expected, _ = kernel.one_step(expected, kernel.bootstrap_results(expected),
                                    seed=step_seeds[t])
      result = langevin.langevin_sample(
          energy_fn, x0, [0, 0], num_steps=t + 1, step_size=eps, temperature=temperature,
          tau=tau, noise_fn=lambda step, shape, dtype: tf.gather(noises, step))
      self.assertAllClose(result.samples, expected, rtol=1e-5, atol=1e-6)
    self.assertAllClose(result.energies, tf.reshape(energy_fn(result.samples), [-1]),
                        rtol=1e-6, atol=1e-6)

  # 2. Closed form: ULA on U = ||x||^2 / (2 s^2) has stationary law N(0, s^2 / (1 - eps^2/(4 s^2))).
  @parameterized.named_parameters(
      # E = T ||x||^2 / 2, so U = ||x||^2 / 2 (s^2 = 1).
      dict(testcase_name="energy_eps_0.5", eps=0.5, energy_scale=1.0, tau=None, s2=1.0),
      dict(testcase_name="energy_eps_1", eps=1.0, energy_scale=1.0, tau=None, s2=1.0),
      # E = 0 (not even connected to x): the tau term alone, s = tau.
      dict(testcase_name="tau_only", eps=0.25, energy_scale=None, tau=0.5, s2=0.25),
      # E/T = ||x||^2 / 2 and tau = 1: U = ||x||^2, s^2 = 1/2.
      dict(testcase_name="energy_and_tau", eps=0.5, energy_scale=1.0, tau=1.0, s2=0.5),
  )
  def test_gaussian_stationary_variance(self, eps, energy_scale, tau, s2):
    temperature = 0.01
    if energy_scale is None:
      energy_fn = lambda x: tf.zeros([tf.shape(x)[0]])
    else:
      energy_fn = lambda x: energy_scale * temperature * 0.5 * _sum_sq(x)
    x0 = tf.fill([16384, 4], 2.0)  # Far from equilibrium; 150 steps contract it by < 1e-8.
    run = tf.function(lambda x: langevin.langevin_sample(
        energy_fn, x, [3, 4], num_steps=150, step_size=eps, temperature=temperature, tau=tau))
    samples = run(x0).samples.numpy()
    n = samples.size  # 65,536 independent draws (independent chains and coordinates).
    expected_var = s2 / (1.0 - eps**2 / (4.0 * s2))
    # Standard errors: mean sqrt(var/n) = 0.004 s; variance var sqrt(2/n) = 0.55% relative.
    self.assertLess(abs(samples.mean()), 5.0 * np.sqrt(expected_var / n))
    rel_tol = 0.025  # About 4.5 standard errors of the sample variance.
    self.assertAllClose(samples.var() / expected_var, 1.0, atol=rel_tol)
    # The ULA bias (>= 6% here) is larger than the tolerance: the test sees the discretisation.
    self.assertGreater(abs(samples.var() / s2 - 1.0), rel_tol)

  # 3. MALA on a 2-D Gaussian mixture: exact moments; ULA with the same big step is biased.
  def test_mala_matches_mixture_and_ula_is_biased(self):
    mean, cov, p_right = _mixture_moments()
    x0 = tf.random.stateless_normal([8192, 2], seed=[3, 4])  # Not the target law.
    sample_mala = langevin.make_sampler(_mixture_energy, (2,), metropolis=True)
    sample_ula = langevin.make_sampler(_mixture_energy, (2,))
    seed = tf.constant([5, 6], tf.int32)
    # Tolerances: ~4-5 standard errors with 8,192 chains (mean 0.0125, covariance <= 0.02,
    # P(x1 > 0) 0.005); the ULA covariance bias at eps = 0.7 is ~0.15.
    mala = sample_mala(x0, seed, 200, 0.7, 1.0)
    x = mala.samples.numpy()
    self.assertAllClose(x.mean(axis=0), mean, atol=0.05)
    self.assertAllClose(np.cov(x.T), cov, atol=0.08)
    self.assertAllClose(np.mean(x[:, 0] > 0), p_right, atol=0.025)
    self.assertBetween(float(mala.acceptance_rate), 0.3, 0.98)
    self.assertAllClose(mala.energies, _mixture_energy(mala.samples), rtol=1e-5, atol=1e-5)

    ula = sample_ula(x0, seed, 200, 0.7, 1.0)
    self.assertEqual(float(ula.acceptance_rate), 1.0)
    self.assertGreater(np.max(np.abs(np.cov(ula.samples.numpy().T) - cov)), 0.08)

  def test_mala_rejects_hopeless_proposals_and_keeps_the_state(self):
    x0 = tf.random.stateless_normal([64, 2], seed=[1, 1])
    result = langevin.langevin_sample(lambda x: 0.5 * _sum_sq(x), x0, [2, 2], num_steps=3,
                                      step_size=50.0, metropolis=True)
    # A proposal is ~N(-1249 x, 2500 I): accepting one has probability < exp(-1e5).
    self.assertEqual(float(result.acceptance_rate), 0.0)
    self.assertAllEqual(result.samples, x0)

  # 4. Reproducibility and the documented noise scheme.
  @parameterized.parameters(False, True)
  def test_same_seed_same_samples(self, metropolis):
    energy_fn = _mlp_energy(3)
    x0 = tf.random.stateless_uniform([6, 2], seed=[1, 2], minval=-1.0, maxval=1.0)
    run = lambda seed: langevin.langevin_sample(energy_fn, x0, seed, num_steps=4, step_size=0.3,
                                                metropolis=metropolis).samples
    a, b, c = run([9, 9]), run(tf.constant([9, 9], tf.int64)), run([9, 10])
    self.assertAllEqual(a, b)
    self.assertGreater(float(tf.reduce_min(tf.abs(a - c))), 0.0)

  def test_default_noise_is_stateless_normal_folded_by_step(self):
    seed = tf.constant([4, 2], tf.int32)
    shape = [3, 2, 2, 1]
    flat = lambda x: tf.zeros([tf.shape(x)[0]])
    result = langevin.langevin_sample(flat, tf.zeros(shape), seed, num_steps=2, step_size=0.5)
    noise = [tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(seed, t))
             for t in range(2)]
    self.assertAllClose(result.samples, 0.5 * noise[0] + 0.5 * noise[1], rtol=1e-6, atol=1e-7)

  def test_per_chain_noise_is_each_chains_own_stateless_blocks(self):
    # Oracle: chain i's noise at step t is row t mod S of stateless_normal([S, 2, 2, 1],
    # fold_in(seed_i, t div S)), drawn here chain by chain. 40 steps cross a block boundary.
    block = langevin.CHAIN_NOISE_BLOCK_STEPS
    num_steps, eps = block + 8, 0.5
    seeds = tf.constant([[3, 1], [3, 2], [-7, 11]], tf.int64)
    flat = lambda x: tf.zeros([tf.shape(x)[0]])
    result = langevin.langevin_sample(flat, tf.zeros([3, 2, 2, 1]), seeds, num_steps=num_steps,
                                      step_size=eps)
    for i in range(3):
      blocks = [tf.random.stateless_normal(
          [block, 2, 2, 1], tf.random.experimental.stateless_fold_in(seeds[i], k))
                for k in range(2)]
      noise = tf.concat(blocks, 0)[:num_steps]
      self.assertAllClose(result.samples[i], eps * tf.reduce_sum(noise, 0), rtol=1e-5,
                          atol=1e-6)
    direct = langevin.per_chain_noise(seeds, tf.constant(1), [2, 2, 1])
    self.assertEqual(direct.shape, [block, 3, 2, 2, 1])
    self.assertAllEqual(direct[:, 2], tf.random.stateless_normal(
        [block, 2, 2, 1], tf.random.experimental.stateless_fold_in(seeds[2], 1)))

  def test_per_chain_seeds_make_chains_independent_of_their_batch(self):
    energy_fn = _conv_energy(4, (4, 4, 1))
    x0 = tf.random.stateless_uniform([6, 4, 4, 1], seed=[1, 2], minval=-1.0, maxval=1.0)
    seeds = tf.constant([[i, 100 + i] for i in range(6)], tf.int64)
    kwargs = dict(num_steps=langevin.CHAIN_NOISE_BLOCK_STEPS + 3, step_size=0.1)
    run = tf.function(lambda x, s: langevin.langevin_sample(energy_fn, x, s, **kwargs).samples)
    batch = run(x0, seeds).numpy()
    for i in range(6):  # Alone, bitwise the same.
      self.assertAllEqual(run(x0[i:i + 1], seeds[i:i + 1])[0], batch[i])
    order = [5, 2, 0, 4, 1, 3]  # Another order and company: the same rows.
    self.assertAllEqual(run(tf.gather(x0, order), tf.gather(seeds, order)), batch[order])
    self.assertAllEqual(run(x0[:2], seeds[:2]), batch[:2])
    # Different seeds give different chains; equal seeds on equal starts the same chain.
    self.assertGreater(float(tf.reduce_min(tf.abs(batch[0] - batch[1]))), 0.0)
    twins = run(tf.stack([x0[0], x0[0]]), tf.stack([seeds[0], seeds[0]])).numpy()
    self.assertAllEqual(twins[0], twins[1])

  def test_per_chain_seed_errors(self):
    flat = lambda x: tf.zeros([tf.shape(x)[0]])
    x0 = tf.zeros([3, 2])
    with self.assertRaisesRegex(ValueError, r"per-chain seed must have shape \[batch, 2\] = "
                                r"\[3, 2\]; got \(2, 2\)"):
      langevin.langevin_sample(flat, x0, tf.zeros([2, 2], tf.int64), num_steps=1, step_size=0.1)
    with self.assertRaisesRegex(ValueError, "unadjusted Langevin .* got metropolis=True"):
      langevin.langevin_sample(flat, x0, tf.zeros([3, 2], tf.int64), num_steps=1, step_size=0.1,
                               metropolis=True)
    with self.assertRaisesRegex(ValueError, r"shape \[2\] \(or \[batch, 2\]"):
      langevin.langevin_sample(flat, x0, tf.zeros([3, 3], tf.int64), num_steps=1, step_size=0.1)
    run = tf.function(lambda x, s: langevin.langevin_sample(flat, x, s, num_steps=1,
                                                            step_size=0.1).samples,
                      input_signature=[tf.TensorSpec([None, 2]),
                                       tf.TensorSpec([None, 2], tf.int64)])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "per-chain seed must have shape"):
      run(x0, tf.zeros([2, 2], tf.int64))

  def test_zero_steps_returns_the_input(self):
    energy_fn = _mlp_energy(5)
    x0 = tf.random.stateless_uniform([4, 2], seed=[1, 2], minval=-1.0, maxval=1.0)
    for metropolis in (False, True):
      result = langevin.langevin_sample(energy_fn, x0, [1, 1], num_steps=0, step_size=0.1,
                                        metropolis=metropolis)
      self.assertAllEqual(result.samples, x0)
      self.assertAllClose(result.energies, tf.reshape(energy_fn(x0), [-1]))
      self.assertEqual(float(result.drift_norm), 0.0)
      self.assertEqual(float(result.acceptance_rate), 1.0)

  # 5. Prior energy and joint temperature equal a hand-combined energy with the same noise.
  def test_prior_and_joint_temperature_equal_combined_energy(self):
    energy_fn, prior_fn = _mlp_energy(21), _mlp_energy(31)
    temperature, prior_temperature, joint_temperature, tau = 0.5, 0.25, 1.25, 0.7
    x0 = tf.random.stateless_uniform([8, 2], seed=[1, 2], minval=-1.0, maxval=1.0)
    kwargs = dict(num_steps=3, step_size=0.25, tau=tau)
    result = langevin.langevin_sample(
        energy_fn, x0, [5, 5], temperature=temperature, prior_energy_fn=prior_fn,
        prior_temperature=prior_temperature, joint_temperature=joint_temperature, **kwargs)

    def combined(x):
      return (tf.reshape(energy_fn(x), [-1]) / temperature +
              tf.reshape(prior_fn(x), [-1]) / prior_temperature) / joint_temperature

    expected = langevin.langevin_sample(combined, x0, [5, 5], **kwargs)
    self.assertAllClose(result.samples, expected.samples, rtol=1e-5, atol=1e-6)
    self.assertAllClose(result.energies, tf.reshape(energy_fn(result.samples), [-1]), atol=1e-6)
    # The prior really matters: without it the chains end elsewhere.
    no_prior = langevin.langevin_sample(energy_fn, x0, [5, 5], temperature=temperature,
                                        joint_temperature=joint_temperature, **kwargs)
    self.assertGreater(float(tf.reduce_max(tf.abs(no_prior.samples - expected.samples))), 1e-3)

  # 6. Per-sample gradient clipping and the drift diagnostic.
  def test_grad_clipping_bounds_each_drift(self):
    eps, clip = 0.1, 0.2
    # U = 50 ||x||^2 so the unclipped drift (eps^2/2) * 100 x has norm 0.5 ||x||.
    energy_fn = lambda x: 50.0 * _sum_sq(x)
    direction = tf.random.stateless_normal([4, 2, 2, 1], seed=[8, 8])
    norms = tf.constant([0.1, 0.3, 1.0, 5.0])
    x0 = direction / tf.norm(tf.reshape(direction, [4, -1]), axis=1)[:, None, None, None]
    x0 *= norms[:, None, None, None]
    zero_noise = lambda step, shape, dtype: tf.zeros(shape, dtype)
    result = langevin.langevin_sample(energy_fn, x0, [1, 1], num_steps=1, step_size=eps,
                                      grad_clip_norm=clip, noise_fn=zero_noise)
    expected_drift_norms = np.minimum(0.5 * norms.numpy(), clip)  # [0.05, 0.15, 0.2, 0.2]
    drift = x0 - result.samples
    self.assertAllClose(tf.norm(tf.reshape(drift, [4, -1]), axis=1), expected_drift_norms,
                        rtol=1e-5)
    self.assertAllClose(drift, (expected_drift_norms / norms.numpy())[:, None, None, None] * x0,
                        rtol=1e-5, atol=1e-7)
    self.assertAllClose(result.drift_norm, expected_drift_norms.mean(), rtol=1e-5)

    unclipped = langevin.langevin_sample(energy_fn, x0, [1, 1], num_steps=1, step_size=eps,
                                         noise_fn=zero_noise)
    self.assertAllClose(unclipped.drift_norm, np.mean(0.5 * norms.numpy()), rtol=1e-5)

    # Over several noisy steps the last-step mean drift stays below the clip too.
    steps = langevin.langevin_sample(energy_fn, x0, [1, 1], num_steps=5, step_size=eps,
                                     grad_clip_norm=clip)
    self.assertLessEqual(float(steps.drift_norm), clip * (1 + 1e-5))

  # 7. make_sampler: no retracing, XLA.
  def test_make_sampler_does_not_retrace(self):
    energy_fn = _conv_energy(2, (4, 4, 1))
    sampler = langevin.make_sampler(energy_fn, (4, 4, 1), tau=0.5)
    x_a = tf.random.stateless_uniform([3, 4, 4, 1], seed=[1, 2], minval=-1.0, maxval=1.0)
    x_b = tf.random.stateless_uniform([5, 4, 4, 1], seed=[1, 3], minval=-1.0, maxval=1.0)
    seed = tf.constant([1, 2], tf.int32)
    first = sampler(x_a, seed, 2, 0.1, 1.0)
    sampler(x_b, seed, tf.constant(3), tf.constant(0.2), tf.constant(0.5))
    self.assertEqual(sampler.experimental_get_tracing_count(), 1)
    eager = langevin.langevin_sample(energy_fn, x_a, seed, num_steps=2, step_size=0.1, tau=0.5)
    self.assertAllClose(first.samples, eager.samples, rtol=1e-6, atol=1e-6)

  def test_make_sampler_static_batch(self):
    # One trace per batch size, none for new step settings; bitwise the samples of the
    # dynamic-batch sampler (the same ops, only the shapes are known at trace time).
    energy_fn = _conv_energy(2, (4, 4, 1))
    dynamic = langevin.make_sampler(energy_fn, (4, 4, 1), tau=0.5)
    static = langevin.make_sampler(energy_fn, (4, 4, 1), static_batch=True, tau=0.5)
    seed = tf.constant([1, 2], tf.int32)
    for batch, settings in ((3, (2, 0.1, 1.0)), (5, (3, 0.2, 0.5)), (3, (4, 0.05, 2.0)),
                            (5, (1, 0.1, 1.0))):
      x = tf.random.stateless_uniform([batch, 4, 4, 1], seed=[1, batch], minval=-1.0,
                                      maxval=1.0)
      got, want = static(x, seed, *settings), dynamic(x, seed, *settings)
      self.assertAllEqual(got.samples, want.samples)
      self.assertAllEqual(got.energies, want.energies)
      self.assertEqual(float(got.drift_norm), float(want.drift_norm))
    self.assertEqual(static.experimental_get_tracing_count(), 2)
    with self.assertRaisesRegex(ValueError, r"x_init must have shape \[B, 4, 4, 1\]; got "
                                r"\(2, 4, 4, 3\)"):
      static(tf.zeros([2, 4, 4, 3]), seed, 1, 0.1, 1.0)
    with self.assertRaisesRegex(ValueError, "static_batch must be a bool; got 1"):
      langevin.make_sampler(energy_fn, (4, 4, 1), static_batch=1)

  def test_make_sampler_jit_compile(self):
    energy_fn = lambda x: 0.5 * _sum_sq(x)
    x0 = tf.random.stateless_uniform([2, 3, 3, 1], seed=[1, 2], minval=-1.0, maxval=1.0)
    seed = tf.constant([1, 2], tf.int32)
    # XLA's stateless RNG draws other numbers than TF's kernels for the same seed, so the update
    # math is compared with a deterministic noise_fn baked into both samplers.
    def sine_noise(step, shape, dtype):
      index = tf.reshape(tf.range(tf.reduce_prod(shape)), shape)
      return tf.sin(tf.cast(index * (step + 3), dtype))

    jitted = langevin.make_sampler(energy_fn, (3, 3, 1), jit_compile=True, noise_fn=sine_noise)
    eager = langevin.langevin_sample(energy_fn, x0, seed, num_steps=2, step_size=0.1,
                                     noise_fn=sine_noise)
    self.assertAllClose(jitted(x0, seed, 2, 0.1, 1.0).samples, eager.samples, rtol=1e-5, atol=1e-6)
    # MALA compiles, and is reproducible under XLA too.
    jitted_mala = langevin.make_sampler(energy_fn, (3, 3, 1), jit_compile=True, metropolis=True)
    first, second = jitted_mala(x0, seed, 2, 0.5, 1.0), jitted_mala(x0, seed, 2, 0.5, 1.0)
    self.assertAllEqual(first.samples, second.samples)
    self.assertBetween(float(first.acceptance_rate), 0.0, 1.0)
    self.assertAllClose(first.energies, energy_fn(first.samples), rtol=1e-5, atol=1e-6)

  def test_inside_a_tf_function_in_a_replica_context(self):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    energy_fn = lambda x: 0.5 * _sum_sq(x)
    x0 = tf.random.stateless_uniform([4, 2], seed=[1, 2], minval=-1.0, maxval=1.0)

    @tf.function
    def step(num_steps, step_size):
      return strategy.run(lambda: langevin.langevin_sample(
          energy_fn, x0, tf.constant([1, 2]), num_steps=num_steps, step_size=step_size))

    result = step(tf.constant(3), tf.constant(0.1))
    eager = langevin.langevin_sample(energy_fn, x0, [1, 2], num_steps=3, step_size=0.1)
    self.assertAllClose(result.samples, eager.samples, rtol=1e-6, atol=1e-6)

  # 8. Bad inputs.
  def test_bad_inputs_raise_clear_errors(self):
    energy_fn = lambda x: 0.5 * _sum_sq(x)
    x0 = tf.zeros([2, 3, 3, 1])
    ok = dict(num_steps=1, step_size=0.1)

    def check(pattern, x=x0, seed=(1, 2), fn=energy_fn, **kwargs):
      with self.assertRaisesRegex(ValueError, pattern):
        langevin.langevin_sample(fn, x, seed, **{**ok, **kwargs})

    check(r"x_init must be float32 images in \[-1, 1\]; got dtype uint8",
          x=np.zeros([2, 3, 3, 1], np.uint8))
    check(r"x_init must be finite", x=tf.constant([[0.0, np.nan]]))
    check(r"x_init must be finite", x=tf.constant([[0.0, np.inf]]))
    check(r"x_init must have shape \[batch, \.\.\.\] \(rank >= 2\); got shape \(3,\)",
          x=tf.zeros([3]))
    check(r"step_size must be a finite number > 0; got 0", step_size=0.0)
    check(r"step_size must be a finite number > 0; got -0.1", step_size=tf.constant(-0.1))
    check(r"num_steps must be an integer >= 0; got -1", num_steps=-1)
    check(r"num_steps must be an integer >= 0; got 2.5", num_steps=2.5)
    check(r"temperature must be a finite number > 0; got 0", temperature=0.0)
    check(r"joint_temperature must be a finite number > 0", joint_temperature=-1.0)
    check(r"grad_clip_norm must be a finite number > 0", grad_clip_norm=0.0)
    check(r"tau must be None or >= 0; got -1", tau=-1.0)
    check(r"seed must be an int32/int64 tensor of shape \[2\]", seed=(1, 2, 3))
    check(r"energy_fn must return energies of shape \[batch\] or \[batch, 1\]; got \(2, 9\)",
          fn=lambda x: tf.reshape(x, [2, 9]))
    with self.assertRaisesRegex(ValueError, "unexpected keyword argument 'num_steps'"):
      langevin.make_sampler(energy_fn, (3, 3, 1), num_steps=3)

    # Values only known at run time are checked by graph assertions.
    sampler = langevin.make_sampler(energy_fn, (3, 3, 1))
    seed = tf.constant([1, 2], tf.int32)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "x_init must be finite"):
      sampler(tf.fill([2, 3, 3, 1], np.nan), seed, 1, 0.1, 1.0)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "step_size must be a finite"):
      sampler(x0, seed, 1, -0.1, 1.0)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "temperature must be a finite"):
      sampler(x0, seed, 1, 0.1, 0.0)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "num_steps must be an integer"):
      sampler(x0, seed, -2, 0.1, 1.0)


if __name__ == "__main__":
  tf.test.main()
