"""Tests for ebm_tf.evaluation.toy_eval: exact TV/KL curves of Langevin chains on the 2-D toys.

Oracles: the true toy energy E = -log p at temperature 1 (a correct sampler for it keeps exact
samples exact and mixes from a point mass), the closed-form entropy of the eight-Gaussian mixture,
a rigorous bound on the histogram TV of n i.i.d. exact samples (Jensen + McDiarmid), and the
sampler itself (`langevin.langevin_sample`) called segment by segment with folded seeds.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from ebm_tf.data import toy_densities
from ebm_tf.evaluation import toy_eval
from ebm_tf.mcmc import langevin

_N = 1000
_BINS = 20
# P(tv > E[tv] + 0.07) <= exp(-2 n 0.07^2) < 1e-4 at n = 1000 (McDiarmid).
_MARGIN = 0.07


def _seed(a, b):
  return tf.constant([a, b], tf.int32)


class ChainDistanceCurveTest(tf.test.TestCase):

  def test_true_energy_keeps_exact_samples_exact(self):
    toy = toy_densities.get_toy("eight_gaussians")  # radius 2, std 0.2
    x0 = toy.sample(_seed(1, 2), _N)
    curve = toy_eval.chain_distance_curve(toy.energy, toy, x0, _seed(3, 4), [0, 100, 800],
                                          step_size=0.03, temperature=1.0, bins=_BINS)
    self.assertEqual([p["step"] for p in curve], [0, 100, 800])
    bound = toy_eval.expected_iid_tv_bound(toy, _N, _BINS)
    # Entropy of the mixture of 8 well separated N(mu_k, s^2 I): log 8 + 1 + log(2 pi s^2); the
    # mean of -log p over n points has standard deviation ~1/sqrt(n) (Var(chi2_2 / 2) = 1).
    entropy = math.log(8.0) + 1.0 + math.log(2.0 * math.pi * 0.2**2)
    for point in curve:
      # ULA's bias at eps = 0.03 on std 0.2 is a 0.6% variance inflation: far below the margin.
      self.assertLess(point["tv"], bound + _MARGIN, point)
      self.assertLess(point["kl"], 0.1, point)
      self.assertAllClose(point["mean_energy"], entropy, atol=5.0 / math.sqrt(_N) + 0.02)
      self.assertEqual(point["frac_outside_bounds"], 0.0)
      self.assertEqual(point["frac_nonfinite"], 0.0)

  def test_tv_falls_from_a_point_mass_to_the_iid_level(self):
    # Overlapping components (radius 1, std 0.4): chains started at one point mix in ~100s of
    # steps of size 0.1.
    toy = toy_densities.get_toy("eight_gaussians", radius=1.0, std=0.4)
    x0 = np.zeros([_N, 2], np.float32)
    curve = toy_eval.chain_distance_curve(toy.energy, toy, x0, _seed(5, 6), [0, 10, 100, 600],
                                          step_size=0.1, temperature=1.0, bins=_BINS)
    tvs = [p["tv"] for p in curve]
    # All mass in the bin holding the origin: tv = 1 - p(that bin).
    probs, _ = toy_densities.bin_probabilities(toy, _BINS)
    low, high = toy.bounds[0]
    origin_bin = int((0.0 - low) / (high - low) * _BINS)
    self.assertAllClose(tvs[0], 1.0 - probs[origin_bin, origin_bin], atol=1e-9)
    self.assertGreater(tvs[0], tvs[1])
    self.assertGreater(tvs[1], tvs[2])
    self.assertLess(tvs[-1], toy_eval.expected_iid_tv_bound(toy, _N, _BINS) + _MARGIN)
    iid = toy_eval.iid_reference(toy, _N, _seed(7, 8), bins=_BINS)
    self.assertLess(abs(tvs[-1] - iid["tv"]), 2 * _MARGIN)

  def test_a_wrong_energy_is_detected(self):
    # Negative control: chains of a mixture with radius 1.5 leave the radius-2 data.
    toy = toy_densities.get_toy("eight_gaussians")
    wrong = toy_densities.get_toy("eight_gaussians", radius=1.5)
    curve = toy_eval.chain_distance_curve(wrong.energy, toy, toy.sample(_seed(1, 2), _N),
                                          _seed(3, 4), [0, 200], step_size=0.05,
                                          temperature=1.0, bins=_BINS)
    bound = toy_eval.expected_iid_tv_bound(toy, _N, _BINS)
    self.assertLess(curve[0]["tv"], bound + _MARGIN)
    self.assertGreater(curve[1]["tv"], bound + 0.3)

  def test_step_zero_statistics_against_direct_computation(self):
    toy = toy_densities.get_toy("two_rings")
    x0 = np.concatenate([toy.sample(_seed(1, 1), 90).numpy(),
                         np.array([[5.0, 0.0]] * 7 + [[0.0, -2.25]] * 3, np.float32)])
    (point,) = toy_eval.chain_distance_curve(toy.energy, toy, x0, _seed(0, 0), [0],
                                             step_size=0.1, temperature=1.0, bins=10)
    # two_rings bounds are +-2.6: 7 of 100 points are outside, (0, -2.25) is inside.
    self.assertAllClose(point["frac_outside_bounds"], 0.07)
    self.assertAllClose(point["mean_energy"], np.mean(-toy.log_prob(x0).numpy()), rtol=1e-5)
    expected = toy_densities.histogram_distances(x0, toy, bins=10)
    self.assertAllClose(point["tv"], expected["tv"])
    self.assertAllClose(point["kl"], expected["kl"])

  def test_groups_are_scored_separately(self):
    toy = toy_densities.get_toy("eight_gaussians")
    exact = toy.sample(_seed(1, 2), 300).numpy()
    far = np.tile(np.array([[5.0, 0.0]], np.float32), [50, 1])
    curves = toy_eval.chain_distance_curves(toy.energy, toy, {"exact": exact, "far": far},
                                            _seed(3, 4), [0], step_size=0.05,
                                            temperature=1.0, bins=10)
    self.assertEqual(list(curves), ["exact", "far"])
    for name, points in (("exact", exact), ("far", far)):
      (point,) = curves[name]
      expected = toy_densities.histogram_distances(points, toy, bins=10)
      self.assertAllClose(point["tv"], expected["tv"])
      self.assertAllClose(point["mean_energy"], np.mean(-toy.log_prob(points).numpy()),
                          rtol=1e-5)
    self.assertEqual(curves["exact"][0]["frac_outside_bounds"], 0.0)
    self.assertEqual(curves["far"][0]["frac_outside_bounds"], 1.0)
    with self.assertRaisesRegex(ValueError, "x_inits must be a non-empty dict"):
      toy_eval.chain_distance_curves(toy.energy, toy, {}, _seed(3, 4), [0], step_size=0.05,
                                     temperature=1.0)
    with self.assertRaisesRegex(ValueError, r"x_inits\['far'\] must be a float array"):
      toy_eval.chain_distance_curves(toy.energy, toy, {"far": far[:, :1]}, _seed(3, 4), [0],
                                     step_size=0.05, temperature=1.0)

  def test_segments_run_the_sampler_with_folded_seeds(self):
    toy = toy_densities.get_toy("eight_gaussians")
    x0 = toy.sample(_seed(1, 2), 16)
    seed = _seed(11, 12)
    recorded = [(s, x.copy(), e.copy()) for s, x, e in toy_eval.chain_states(
        toy.energy, x0, seed, [3, 7], step_size=0.05, temperature=0.5)]
    self.assertEqual([s for s, _, _ in recorded], [3, 7])
    x, expected = x0, []
    for segment, steps in enumerate((3, 4)):
      result = langevin.langevin_sample(
          toy.energy, x, tf.cast(tf.random.experimental.stateless_fold_in(seed, segment),
                                 tf.int32), num_steps=steps, step_size=0.05, temperature=0.5)
      x = result.samples
      expected.append((x.numpy(), result.energies.numpy()))
    for (_, states, energies), (want_states, want_energies) in zip(recorded, expected):
      self.assertAllClose(states, want_states, atol=1e-5)
      self.assertAllClose(energies, want_energies, atol=1e-4)
    again = [x for _, x, _ in toy_eval.chain_states(toy.energy, x0, seed, [3, 7],
                                                    step_size=0.05, temperature=0.5)]
    self.assertAllEqual(again[1], recorded[1][1])

  def test_diverging_chains_are_reported_not_raised(self):
    toy = toy_densities.get_toy("eight_gaussians")
    explode = lambda x: -tf.reduce_sum(x**4, axis=1)  # the drift grows like |x|^3
    x0 = np.array([[3.0, 3.0]] * 5 + [[0.0, 0.0]] * 5, np.float32)
    curve = toy_eval.chain_distance_curve(explode, toy, x0, _seed(1, 2), [0, 50, 60],
                                          step_size=0.5, temperature=1.0, bins=10)
    last = curve[-1]
    self.assertGreater(last["frac_nonfinite"], 0.0)
    self.assertEqual(last["frac_outside_bounds"], 1.0)
    self.assertAllClose(last["tv"], 1.0, atol=1e-6)

  def test_bad_arguments(self):
    toy = toy_densities.get_toy("eight_gaussians")
    x0 = np.zeros([4, 2], np.float32)
    kwargs = dict(step_size=0.1, temperature=1.0)

    def curve(record_steps=(0, 5), x=x0, seed=_seed(0, 0), density=toy):
      return toy_eval.chain_distance_curve(toy.energy, density, x, seed, record_steps, **kwargs)

    for steps in ([0, 10, 5], [5, 5], [-1, 5], [], [0, 1.5], [True], 7):
      with self.assertRaisesRegex(ValueError, "record_steps must be"):
        curve(steps)
    with self.assertRaisesRegex(ValueError, r"x_init must be a float array of shape \[N, 2\].*"
                                r"\[4, 3\]"):
      curve(x=np.zeros([4, 3], np.float32))
    with self.assertRaisesRegex(ValueError, r"x_init must be .*got float32 of shape \[2\]"):
      curve(x=np.zeros([2], np.float32))
    with self.assertRaisesRegex(ValueError, "x_init must be a float array.*int64"):
      curve(x=np.zeros([4, 2], np.int64))
    with self.assertRaisesRegex(ValueError, "x_init must be finite; got 1 rows"):
      curve(x=np.array([[0.0, np.nan], [0.0, 0.0]], np.float32))
    with self.assertRaisesRegex(ValueError, r"seed must be an int32/int64 tensor of shape \[2\]"):
      curve(seed=tf.constant([1, 2, 3]))
    with self.assertRaisesRegex(ValueError, "toy must be a toy_densities.ToyDensity"):
      curve(density="eight_gaussians")


class IidReferenceTest(tf.test.TestCase):

  def test_bound_holds_and_scales_like_one_over_sqrt_n(self):
    toy = toy_densities.get_toy("two_rings")
    n = 500
    bound = toy_eval.expected_iid_tv_bound(toy, n, bins=_BINS)
    tvs = [toy_eval.iid_reference(toy, n, _seed(i, 0), bins=_BINS)["tv"] for i in range(8)]
    self.assertLess(np.mean(tvs), bound)
    self.assertGreater(np.mean(tvs), 0.5 * bound)  # Jensen's bound is not loose by much.
    self.assertAllClose(toy_eval.expected_iid_tv_bound(toy, 4 * n, bins=_BINS), bound / 2)
    with self.assertRaisesRegex(ValueError, "n must be a positive int"):
      toy_eval.expected_iid_tv_bound(toy, 0)


def _normal_cdf(z):
  return 0.5 * np.vectorize(math.erfc)(-np.asarray(z, np.float64) / math.sqrt(2.0))


def _gaussian_bin_masses(mean, std, bins, bounds):
  """Exact masses of N(mean, std^2 I) in the bins of the window, renormalised on the window."""
  axis = []
  for d in range(2):
    edges = np.linspace(bounds[d][0], bounds[d][1], bins + 1)
    axis.append(np.diff(_normal_cdf((edges - mean[d]) / std)))
  masses = np.outer(axis[0], axis[1])
  return masses / masses.sum()


class ModelDensityTest(tf.test.TestCase):
  """Oracle: Gaussian energies, whose law exp(-U) has closed-form bin masses (erfc)."""

  def test_gaussian_energy_with_temperature_matches_cdf_masses(self):
    mean, std, temperature = np.array([0.3, -0.2]), 0.5, 2.0
    energy = lambda x: tf.reduce_sum(tf.square(x - mean.astype(np.float32)), 1) / (2 * std**2)
    bounds = ((-2.5, 2.0), (-2.0, 3.0))
    probs = toy_eval.model_bin_probabilities(energy, 15, bounds, temperature=temperature)
    self.assertEqual(probs.shape, (15, 15))
    self.assertAllClose(probs.sum(), 1.0)
    # E / T is a Gaussian of std sqrt(T) * std; the midpoint rule's error is O(cell^2).
    expected = _gaussian_bin_masses(mean, math.sqrt(temperature) * std, 15, bounds)
    self.assertLess(np.abs(probs - expected).max(), 2e-4)

  def test_tau_term_adds_a_gaussian_factor(self):
    # E = 0 with the tau term: U = ||x||^2 / (2 tau^2), the law N(0, tau^2 I).
    flat = lambda x: tf.zeros([tf.shape(x)[0]])
    bounds = ((-2.0, 2.0), (-2.0, 2.0))
    probs = toy_eval.model_bin_probabilities(flat, 10, bounds, tau=0.6, refine=6)
    self.assertLess(np.abs(probs - _gaussian_bin_masses((0.0, 0.0), 0.6, 10, bounds)).max(), 5e-4)
    uniform = toy_eval.model_bin_probabilities(flat, 10, bounds, tau=None)
    self.assertAllClose(uniform, np.full([10, 10], 0.01))

  def test_true_energy_is_the_right_density_and_a_hot_one_is_not(self):
    toy = toy_densities.get_toy("eight_gaussians")
    right = toy_eval.model_density_distances(toy.energy, toy, bins=_BINS)
    # Only the exact mass outside the window (< 1e-6) and float32 energies separate the two.
    self.assertLess(right["tv"], 1e-4)
    self.assertLess(right["kl"], 1e-4)
    # T divides the energy: 2 E at T = 2 is the truth again.
    doubled = toy_eval.model_density_distances(lambda x: 2.0 * toy.energy(x), toy,
                                               temperature=2.0, bins=_BINS)
    self.assertLess(doubled["tv"], 1e-4)
    # At T = 2 the law is sqrt(p) normalised: close to the mixture of the 8 components with std
    # 0.2 sqrt(2) (they barely overlap), whose bin masses are exact CDF differences; the
    # overlap regions (where sqrt(a + b) != sqrt(a) + sqrt(b)) account for < 0.01 of TV.
    hot = toy_eval.model_density_distances(toy.energy, toy, temperature=2.0, bins=_BINS)
    window = toy.bounds
    mix = lambda s: sum(_gaussian_bin_masses(c, s, _BINS, window) for c in toy.centers) / 8.0
    expected = 0.5 * np.abs(mix(0.2 * math.sqrt(2.0)) - mix(0.2)).sum()
    self.assertAllClose(hot["tv"], expected, atol=0.01)
    self.assertGreater(hot["tv"], 0.2)

  def test_bad_arguments(self):
    toy = toy_densities.get_toy("eight_gaussians")
    bounds = toy.bounds
    with self.assertRaisesRegex(ValueError, "bins must be a positive int; got 0"):
      toy_eval.model_bin_probabilities(toy.energy, 0, bounds)
    with self.assertRaisesRegex(ValueError, "refine must be a positive int; got 1.5"):
      toy_eval.model_bin_probabilities(toy.energy, 4, bounds, refine=1.5)
    with self.assertRaisesRegex(ValueError, "bounds must be"):
      toy_eval.model_bin_probabilities(toy.energy, 4, ((1, 0), (0, 1)))
    with self.assertRaisesRegex(ValueError, "temperature must be a finite number > 0; got 0"):
      toy_eval.model_bin_probabilities(toy.energy, 4, bounds, temperature=0)
    with self.assertRaisesRegex(ValueError, "tau must be None or a finite number >= 0; got -1"):
      toy_eval.model_bin_probabilities(toy.energy, 4, bounds, tau=-1)
    nan_at_origin = lambda x: tf.where(tf.norm(x, axis=1) < 0.3, np.nan, 0.0)
    with self.assertRaisesRegex(ValueError, "energy is not finite at [0-9]+ of 256 grid points"):
      toy_eval.model_bin_probabilities(nan_at_origin, 4, ((-1, 1), (-1, 1)), refine=4)
    with self.assertRaisesRegex(ValueError, "toy must be a toy_densities.ToyDensity"):
      toy_eval.model_density_distances(toy.energy, "eight_gaussians")


class OutputTest(tf.test.TestCase):

  def _decode(self, path):
    with open(path, "rb") as f:
      return tf.io.decode_png(f.read()).numpy()

  def test_plot_distance_curves_writes_a_png(self):
    curve = [{"step": 0, "tv": 0.9, "kl": 3.0}, {"step": 10, "tv": 0.2, "kl": math.inf},
             {"step": 1000, "tv": 0.1, "kl": 0.05}]
    path = os.path.join(self.get_temp_dir(), "sub", "curves.png")
    self.assertEqual(toy_eval.plot_distance_curves({"a": curve, "b": curve[:2]}, path,
                                                   reference={"tv": 0.1, "kl": 0.05},
                                                   title="t"), path)
    image = self._decode(path)
    self.assertEqual(image.shape[-1], 4)
    self.assertGreater(image.shape[1], image.shape[0])  # Two panels side by side.
    self.assertGreater(np.std(image[..., :3]), 1.0)
    self.assertEqual([f for f in os.listdir(os.path.dirname(path)) if f.startswith(".")], [])
    with self.assertRaisesRegex(ValueError, "path must end with .png"):
      toy_eval.plot_distance_curves({"a": curve}, "curves.jpg")
    with self.assertRaisesRegex(ValueError, "curves must be a non-empty dict"):
      toy_eval.plot_distance_curves({}, path)
    with self.assertRaisesRegex(ValueError, "curve 'a' must be a non-empty list of dicts"):
      toy_eval.plot_distance_curves({"a": [{"step": 0}]}, path)

  def test_write_json_is_strict_json(self):
    path = os.path.join(self.get_temp_dir(), "out.json")
    toy_eval.write_json({"curve": [{"step": np.int64(3), "kl": math.inf,
                                    "tv": np.float32(0.5), "e": math.nan}]}, path)
    with open(path) as f:
      text = f.read()
    self.assertNotIn("Infinity", text)
    self.assertEqual(json.loads(text),
                     {"curve": [{"step": 3, "kl": "inf", "tv": 0.5, "e": "nan"}]})


if __name__ == "__main__":
  tf.test.main()
