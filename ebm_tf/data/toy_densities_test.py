"""Tests for ebm_tf.data.toy_densities against independent scipy oracles."""

import math

from absl.testing import parameterized
import numpy as np
from scipy import integrate
from scipy import special
from scipy import stats
import tensorflow as tf

from ebm_tf.data import toy_densities

_SEED = tf.constant([7, 11], tf.int32)
_N = 20_000


def _grid_log_prob(toy, m):
  """log_prob at the m x m midpoints of toy.bounds, and the cell area."""
  (x0, x1), (y0, y1) = toy.bounds
  xs = x0 + (np.arange(m) + 0.5) * (x1 - x0) / m
  ys = y0 + (np.arange(m) + 0.5) * (y1 - y0) / m
  gx, gy = np.meshgrid(xs, ys, indexing="ij")
  pts = tf.constant(np.stack([gx.ravel(), gy.ravel()], 1), tf.float64)
  return toy.log_prob(pts).numpy(), (x1 - x0) * (y1 - y0) / m**2


def _grid_integral(toy, m=600):
  """Midpoint-rule integral of exp(log_prob) over toy.bounds, m x m points."""
  log_p, area = _grid_log_prob(toy, m)
  return np.exp(log_p).sum() * area


def _expected_null_tv(probs, outside, n):
  """E[TV] of an n-sample histogram against its own law (normal approximation per bin)."""
  p = np.append(probs.ravel(), outside)
  return 0.5 * np.sum(np.sqrt(2.0 * p * (1.0 - p) / (np.pi * n)))


def _black_cells():
  return [(-2.0 + i, -2.0 + j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]


class ToyDensitiesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*toy_densities.TOY_NAMES)
  def test_log_prob_integrates_to_one(self, name):
    toy = toy_densities.get_toy(name)
    self.assertAllClose(_grid_integral(toy), 1.0, atol=1e-3)

  def test_log_prob_integrates_to_one_non_default_parameters(self):
    for toy in (toy_densities.get_toy("eight_gaussians", radius=3.0, std=0.4),
                toy_densities.get_toy("two_rings", radii=(0.5, 3.0), std=0.3,
                                      weights=(0.3, 0.7)),
                toy_densities.get_toy("checkerboard_smooth", sigma=0.3)):
      self.assertAllClose(_grid_integral(toy, m=400), 1.0, atol=1e-3)

  def test_eight_gaussians_matches_scipy_mixture(self):
    toy = toy_densities.get_toy("eight_gaussians", radius=2.0, std=0.3)
    pts = np.array([[0.0, 0.0], [2.0, 0.0], [math.sqrt(2), math.sqrt(2)], [1.0, -0.5],
                    [3.5, 3.5], [-2.0, 0.1]])
    angles = 2 * np.pi * np.arange(8) / 8
    dens = sum(stats.multivariate_normal(mean=[2 * np.cos(a), 2 * np.sin(a)], cov=0.09).pdf(pts)
               for a in angles) / 8
    self.assertAllClose(toy.log_prob(tf.constant(pts, tf.float64)), np.log(dens), rtol=1e-10)
    # float32 in, float32 out.
    out32 = toy.log_prob(tf.constant(pts, tf.float32))
    self.assertEqual(out32.dtype, tf.float32)
    self.assertAllClose(out32, np.log(dens), rtol=1e-5)

  def test_two_rings_matches_numerical_normaliser(self):
    radii, std, weights = (1.0, 2.0), 0.25, (0.4, 0.6)
    toy = toy_densities.get_toy("two_rings", radii=radii, std=std, weights=weights)
    z = [2 * np.pi * integrate.quad(lambda r, big_r=big_r: r * np.exp(-(r - big_r)**2 / (2 * std**2)),
                                    0, np.inf)[0] for big_r in radii]
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [1.2, 1.2], [3.0, 0.5]])
    r = np.linalg.norm(pts, axis=1)
    dens = sum(w * np.exp(-(r - big_r)**2 / (2 * std**2)) / zk
               for w, big_r, zk in zip(weights, radii, z))
    self.assertAllClose(toy.log_prob(tf.constant(pts, tf.float64)), np.log(dens), rtol=1e-9)

  def test_checkerboard_values(self):
    toy = toy_densities.get_toy("checkerboard")
    pts = tf.constant([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [1.5, -0.5], [-1.5, 1.5],
                       [2.5, 0.0], [0.0, -2.2]], tf.float32)
    black, white_or_out = -math.log(8.0), -np.inf
    self.assertAllClose(toy.log_prob(pts),
                        [black, white_or_out, black, black, white_or_out, white_or_out,
                         white_or_out])

  def test_smooth_checkerboard_matches_convolution_integral(self):
    sigma = 0.2
    toy = toy_densities.get_toy("checkerboard_smooth", sigma=sigma)
    pts = np.array([[-1.5, -1.5], [-1.0, -1.0], [0.1, 0.95], [2.2, -0.3]])
    expected = []
    for x, y in pts:
      total = 0.0
      for a, b in _black_cells():  # the Gaussian kernel factorises over the two axes
        ix = integrate.quad(lambda u, x=x: stats.norm.pdf(x - u, scale=sigma), a, a + 1,
                            epsabs=1e-13)[0]
        iy = integrate.quad(lambda v, y=y: stats.norm.pdf(y - v, scale=sigma), b, b + 1,
                            epsabs=1e-13)[0]
        total += ix * iy / 8
      expected.append(np.log(total))
    self.assertAllClose(toy.log_prob(tf.constant(pts, tf.float64)), expected, rtol=1e-7)

  def test_smooth_checkerboard_far_tail_is_finite_and_exact(self):
    sigma = 0.1
    toy = toy_densities.get_toy("checkerboard_smooth", sigma=sigma)
    pts = np.array([[6.0, 0.5], [-9.0, -9.0], [0.5, 30.0]])

    def log_interval(lo, hi):  # log(Phi(hi) - Phi(lo)) via scipy's log_ndtr, lo < hi
      if hi <= 0:
        lo, hi = -hi, -lo
      la, lb = special.log_ndtr(-lo), special.log_ndtr(-hi)  # upper tails
      return la + np.log1p(-np.exp(lb - la))

    expected = []
    for x, y in pts:
      terms = [log_interval((a - x) / sigma, (a + 1 - x) / sigma) +
               log_interval((b - y) / sigma, (b + 1 - y) / sigma) for a, b in _black_cells()]
      expected.append(special.logsumexp(terms) - np.log(8))
    x = tf.Variable(pts)
    with tf.GradientTape() as tape:
      lp = toy.log_prob(x)
    grad = tape.gradient(lp, x)
    self.assertAllClose(lp, expected, rtol=1e-6)
    self.assertTrue(np.all(np.isfinite(grad.numpy())))
    # Far to the right of the board the log-density falls: the x-gradient is negative.
    self.assertLess(grad.numpy()[0, 0], 0.0)

  def test_log_erfc_matches_scipy(self):
    z = np.linspace(-20.0, 60.0, 2001)
    expected = special.log_ndtr(-np.sqrt(2.0) * z) + np.log(2.0)  # erfc(z) = 2 Phi(-sqrt2 z)
    self.assertAllClose(toy_densities._log_erfc(tf.constant(z)), expected, rtol=1e-8, atol=1e-9)

  @parameterized.parameters(*toy_densities.TOY_NAMES)
  def test_sample_histogram_matches_exact_bins(self, name):
    toy = toy_densities.get_toy(name)
    samples = toy.sample(_SEED, _N)
    self.assertEqual(samples.dtype, tf.float32)
    self.assertEqual(samples.shape, (_N, 2))
    bins = 24
    probs, outside = toy_densities.bin_probabilities(toy, bins)
    null_tv = _expected_null_tv(probs, outside, _N)
    good = toy_densities.histogram_distances(samples, toy, bins=bins)
    self.assertLess(good["tv"], 1.25 * null_tv)
    self.assertLess(good["kl"], 0.05)
    (x0, x1), (y0, y1) = toy.bounds
    uniform = tf.random.stateless_uniform([_N, 2], seed=[1, 2]) * [x1 - x0, y1 - y0] + [x0, y0]
    bad = toy_densities.histogram_distances(uniform, toy, bins=bins)
    self.assertGreater(bad["tv"], 5 * null_tv)
    self.assertGreater(bad["kl"], 0.3)

  @parameterized.parameters(*toy_densities.TOY_NAMES)
  def test_sample_mean_log_prob_is_negative_entropy(self, name):
    # E_p[log p(x)] = int p log p: the samples' mean log-density against a grid integral.
    toy = toy_densities.get_toy(name)
    log_p, area = _grid_log_prob(toy, 600)
    p = np.exp(log_p)
    neg_entropy = np.sum(p[p > 0] * log_p[p > 0]) * area
    sample_log_p = toy.log_prob(tf.cast(toy.sample(_SEED, _N), tf.float64)).numpy()
    std_err = sample_log_p.std() / np.sqrt(_N)
    self.assertAllClose(sample_log_p.mean(), neg_entropy, atol=4 * std_err + 1e-4)
    if name == "checkerboard_smooth":  # power: 15% too much blur is caught
      wrong = (toy_densities.get_toy("checkerboard").sample(_SEED, _N) +
               1.15 * toy.sigma * tf.random.stateless_normal([_N, 2], seed=[9, 9]))
      wrong_log_p = toy.log_prob(tf.cast(wrong, tf.float64)).numpy()
      self.assertGreater(abs(wrong_log_p.mean() - neg_entropy), 4 * std_err + 1e-4)

  def test_histogram_detects_slightly_wrong_width(self):
    toy = toy_densities.get_toy("eight_gaussians", std=0.2)
    wrong = toy_densities.get_toy("eight_gaussians", std=0.24).sample(_SEED, _N)
    probs, outside = toy_densities.bin_probabilities(toy, 24)
    tv = toy_densities.histogram_distances(wrong, toy, bins=24)["tv"]
    self.assertGreater(tv, 1.5 * _expected_null_tv(probs, outside, _N))

  def test_two_rings_radius_distribution_ks(self):
    radii, std, weights = (1.0, 2.0), 0.3, (0.5, 0.5)
    toy = toy_densities.get_toy("two_rings", radii=radii, std=std, weights=weights)
    r = np.linalg.norm(toy.sample(_SEED, 5000).numpy().astype(np.float64), axis=1)
    # Independent CDF: cumulative trapezoid of the radial density 2 pi r sum_k w_k e^.. / Z_k.
    grid = np.linspace(0.0, 5.0, 200_001)
    dens = sum(w * grid * np.exp(-(grid - big_r)**2 / (2 * std**2)) for w, big_r in
               zip([w / integrate.quad(lambda t, b=b: t * np.exp(-(t - b)**2 / (2 * std**2)),
                                       0, np.inf)[0] for w, b in zip(weights, radii)], radii))
    cdf = integrate.cumulative_trapezoid(dens, grid, initial=0.0)
    self.assertAllClose(cdf[-1], 1.0, atol=1e-6)
    result = stats.kstest(r, lambda x: np.interp(x, grid, cdf))
    self.assertGreater(result.pvalue, 1e-3)
    # And the test has power: radii from the wrong ring width are rejected.
    wrong = toy_densities.get_toy("two_rings", radii=radii, std=0.36, weights=weights)
    r_wrong = np.linalg.norm(wrong.sample(_SEED, 5000).numpy().astype(np.float64), axis=1)
    self.assertLess(stats.kstest(r_wrong, lambda x: np.interp(x, grid, cdf)).pvalue, 1e-3)

  def test_bin_probabilities_match_exact_cdf_masses(self):
    std = 0.2
    toy = toy_densities.get_toy("eight_gaussians", radius=2.0, std=std)
    bins = 20
    probs, outside = toy_densities.bin_probabilities(toy, bins)
    (x0, x1), _ = toy.bounds
    edges = np.linspace(x0, x1, bins + 1)
    exact = np.zeros((bins, bins))
    for a in 2 * np.pi * np.arange(8) / 8:
      px = np.diff(stats.norm.cdf(edges, loc=2 * np.cos(a), scale=std))
      py = np.diff(stats.norm.cdf(edges, loc=2 * np.sin(a), scale=std))
      exact += np.outer(px, py) / 8
    self.assertAllClose(probs, exact, atol=2e-4)
    self.assertAllClose(outside, 1.0 - exact.sum(), atol=1e-6)
    board, board_outside = toy_densities.bin_probabilities(
        toy_densities.get_toy("checkerboard"), 8)
    expected_board = np.array([[0.25 / 8 if (i // 2 + j // 2) % 2 == 0 else 0.0
                                for j in range(8)] for i in range(8)])
    self.assertAllClose(board, expected_board, atol=1e-12)
    self.assertAllClose(board_outside, 0.0, atol=1e-12)

  def test_histogram_distances_known_values(self):
    # All samples in one bin holding exact mass 1/32 (checkerboard, 8x8 bins of 1/4 square):
    # q = 1 there, so tv = 1 - 1/32 and kl = log(32).
    toy = toy_densities.get_toy("checkerboard")
    samples = np.full((100, 2), -1.9)
    d = toy_densities.histogram_distances(samples, toy, bins=8)
    self.assertAllClose(d["tv"], 1 - 1 / 32)
    self.assertAllClose(d["kl"], np.log(32))
    # A sample where the exact law has no mass (a white square) makes kl infinite.
    d = toy_densities.histogram_distances(np.array([[-0.5, -1.5]]), toy, bins=8)
    self.assertEqual(d["kl"], np.inf)
    # Samples outside the window count in the outside bin (exact mass 0 here).
    d = toy_densities.histogram_distances(np.array([[5.0, 5.0], [np.inf, 0.0]]), toy, bins=8)
    self.assertAllClose(d["tv"], 1.0)

  @parameterized.parameters(*toy_densities.TOY_NAMES)
  def test_sampler_is_a_pure_function_of_the_seed(self, name):
    toy = toy_densities.get_toy(name)
    a = toy.sample(tf.constant([3, 4], tf.int64), 100)
    b = toy.sample(tf.constant([3, 4], tf.int64), 100)
    c = toy.sample(tf.constant([3, 5], tf.int64), 100)
    self.assertAllEqual(a, b)
    self.assertGreater(np.abs(a.numpy() - c.numpy()).max(), 0.1)

  def test_log_prob_gradient_matches_finite_differences(self):
    for name in ("eight_gaussians", "two_rings", "checkerboard_smooth"):
      toy = toy_densities.get_toy(name)
      x = tf.constant([[0.3, 1.7], [-1.1, 0.4], [1.9, -0.2]], tf.float64)
      with tf.GradientTape() as tape:
        tape.watch(x)
        energy = tf.reduce_sum(toy.energy(x))
      grad = tape.gradient(energy, x).numpy()
      h = 1e-6
      fd = np.stack([(toy.energy(x + h * e).numpy() - toy.energy(x - h * e).numpy()) / (2 * h)
                     for e in np.eye(2)], axis=1)
      self.assertAllClose(grad, fd, rtol=1e-5, atol=1e-5, msg=name)

  def test_log_prob_works_in_tf_function(self):
    toy = toy_densities.get_toy("eight_gaussians")
    fn = tf.function(toy.log_prob, input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    x = toy.sample(_SEED, 10)
    self.assertAllClose(fn(x), toy.log_prob(x))

  def test_bad_inputs(self):
    toy = toy_densities.get_toy("eight_gaussians")
    with self.assertRaisesRegex(ValueError, "one of"):
      toy_densities.get_toy("nine_gaussians")
    with self.assertRaisesRegex(ValueError, r"shape \[N, 2\]"):
      toy.log_prob(tf.zeros([4, 3]))
    with self.assertRaisesRegex(ValueError, r"shape \[N, 2\]"):
      toy.log_prob(tf.zeros([4, 2], tf.int32))
    with self.assertRaisesRegex(ValueError, r"seed must be an int tensor of shape \[2\]"):
      toy.sample(tf.constant([1, 2, 3]), 5)
    with self.assertRaisesRegex(ValueError, "n must be a positive int"):
      toy.sample(_SEED, 0)
    with self.assertRaisesRegex(ValueError, "std must be a positive"):
      toy_densities.get_toy("eight_gaussians", std=-1.0)
    with self.assertRaisesRegex(ValueError, "weights"):
      toy_densities.get_toy("two_rings", weights=(0.5, 0.6))
    with self.assertRaisesRegex(ValueError, "NaN"):
      toy_densities.histogram_distances(np.array([[np.nan, 0.0]]), toy)
    with self.assertRaisesRegex(ValueError, r"shape \[n, 2\]"):
      toy_densities.histogram_distances(np.zeros([5, 3]), toy)
    with self.assertRaisesRegex(ValueError, "bounds"):
      toy_densities.histogram_distances(np.zeros([5, 2]), toy, bounds=((1, 0), (0, 1)))


if __name__ == "__main__":
  tf.test.main()
