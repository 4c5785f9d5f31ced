"""2-D toy densities with exact normalised log-densities and exact stateless samplers.

Used as known targets for Langevin/EBM tests and to score long chains (`histogram_distances`).

| name                  | density                                                            |
|-----------------------|--------------------------------------------------------------------|
| eight_gaussians       | equal mixture of 8 isotropic N(mu_k, std^2 I), mu_k on a circle    |
| two_rings             | mixture of 2 rings p_k(x) = exp(-(|x| - R_k)^2 / (2 std^2)) / Z_k  |
| checkerboard          | uniform on the 8 black unit squares of a 4x4 board on [-2, 2)^2    |
| checkerboard_smooth   | checkerboard convolved with N(0, sigma^2 I) (finite log-density)   |

All log-densities are normalised exactly (closed forms, see each class). `log_prob` is built from
TensorFlow ops, so it can be differentiated and used inside `tf.function` (e.g. E = -log_prob).
"""

import abc
import math

import numpy as np
import tensorflow as tf

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_PI = 0.5 * math.log(math.pi)


def _check_points(x):
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating or x.shape.rank != 2 or x.shape[-1] not in (None, 2):
    raise ValueError(f"x must be a float tensor of shape [N, 2]; got {x.dtype.name} of shape "
                     f"{x.shape}")
  return x


def _check_seed_and_n(seed, n):
  seed = tf.convert_to_tensor(seed)
  if not seed.dtype.is_integer or seed.shape != (2,):
    raise ValueError(f"seed must be an int tensor of shape [2]; got {seed.dtype.name} of shape "
                     f"{seed.shape}")
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n must be a positive int; got {n!r}")
  return seed, int(n)


def _check_positive(name, value):
  if not (isinstance(value, (int, float, np.floating, np.integer)) and value > 0 and
          math.isfinite(value)):
    raise ValueError(f"{name} must be a positive finite number; got {value!r}")
  return float(value)


def _std_normal_cdf(z):
  return 0.5 * math.erfc(-z / _SQRT2)


class ToyDensity(abc.ABC):
  """A normalised density on R^2.

  Attributes:
    name: the registry name.
    bounds: ((x_min, x_max), (y_min, y_max)), a box holding all but < 1e-6 of the mass; the
      default histogram window.
  """

  name = None

  @property
  @abc.abstractmethod
  def bounds(self):
    """((x_min, x_max), (y_min, y_max)) as Python floats."""

  def log_prob(self, x):
    """Exact normalised log-density.

    Args:
      x: float32 or float64 [N, 2] points.

    Returns:
      [N] log-densities, same dtype as x (computed in float64); -inf off the support.
    """
    x = _check_points(x)
    return tf.cast(self._log_prob64(tf.cast(x, tf.float64)), x.dtype)

  def energy(self, x):
    """-log_prob(x): float [N] for float [N, 2] points (an energy with temperature 1)."""
    return -self.log_prob(x)

  def sample(self, seed, n):
    """n exact i.i.d. samples, a pure function of the stateless seed.

    Args:
      seed: int32/int64 tensor [2].
      n: positive Python int.

    Returns:
      float32 [n, 2].
    """
    seed, n = _check_seed_and_n(seed, n)
    return tf.cast(self._sample64(seed, n), tf.float32)

  @abc.abstractmethod
  def _log_prob64(self, x):
    """float64 [N, 2] -> float64 [N]."""

  @abc.abstractmethod
  def _sample64(self, seed, n):
    """-> float64 [n, 2]."""


class EightGaussians(ToyDensity):
  """Equal mixture of 8 N(mu_k, std^2 I), mu_k = radius (cos 2 pi k / 8, sin 2 pi k / 8)."""

  name = "eight_gaussians"

  def __init__(self, radius=2.0, std=0.2):
    self.radius = _check_positive("radius", radius)
    self.std = _check_positive("std", std)
    angles = 2.0 * np.pi * np.arange(8) / 8.0
    self.centers = self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)

  @property
  def bounds(self):
    r = self.radius + 6.0 * self.std
    return ((-r, r), (-r, r))

  def _log_prob64(self, x):
    sq = tf.reduce_sum(tf.square(x[:, None, :] - self.centers[None]), axis=-1)  # [N, 8]
    log_norm = math.log(8.0) + math.log(2.0 * math.pi * self.std**2)
    return tf.reduce_logsumexp(-sq / (2.0 * self.std**2), axis=1) - log_norm

  def _sample64(self, seed, n):
    k_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    k = tf.random.stateless_uniform([n], seed=k_seed, minval=0, maxval=8, dtype=tf.int32)
    noise = tf.random.stateless_normal([n, 2], seed=noise_seed, dtype=tf.float64)
    return tf.gather(tf.constant(self.centers), k) + self.std * noise


class TwoRings(ToyDensity):
  """Mixture of rings with a Gaussian radial profile.

  p(x) = sum_k w_k exp(-(|x| - R_k)^2 / (2 s^2)) / Z_k, with (exactly)
  Z_k = int_{R^2} exp(-(|x| - R_k)^2 / (2 s^2)) dx
      = 2 pi [s^2 exp(-R_k^2 / (2 s^2)) + R_k s sqrt(2 pi) Phi(R_k / s)].
  The density is smooth and finite everywhere (no 1/r at the origin). The radius has density
  2 pi r exp(-(r - R_k)^2 / (2 s^2)) / Z_k on r > 0, with a closed-form CDF; the sampler inverts
  it by bisection in float64 and draws the angle uniformly.
  """

  name = "two_rings"

  def __init__(self, radii=(1.0, 2.0), std=0.1, weights=(0.5, 0.5)):
    if len(radii) != 2 or len(weights) != 2:
      raise ValueError(f"radii and weights must have 2 entries; got {radii!r}, {weights!r}")
    self.radii = tuple(_check_positive("radius", r) for r in radii)
    self.std = _check_positive("std", std)
    self.weights = tuple(float(w) for w in weights)
    if min(self.weights) <= 0 or abs(sum(self.weights) - 1.0) > 1e-9:
      raise ValueError(f"weights must be positive and sum to 1; got {weights!r}")
    s = self.std
    self.log_z = tuple(
        math.log(2.0 * math.pi * (s**2 * math.exp(-r**2 / (2 * s**2)) +
                                  r * s * math.sqrt(2 * math.pi) * _std_normal_cdf(r / s)))
        for r in self.radii)

  @property
  def bounds(self):
    r = max(self.radii) + 6.0 * self.std
    return ((-r, r), (-r, r))

  def _log_prob64(self, x):
    r = tf.norm(x, axis=1)[:, None]  # [N, 1]
    radii = tf.constant(self.radii, tf.float64)
    log_terms = (tf.math.log(tf.constant(self.weights, tf.float64)) -
                 tf.constant(self.log_z, tf.float64) - tf.square(r - radii) / (2 * self.std**2))
    return tf.reduce_logsumexp(log_terms, axis=1)

  def radial_cdf(self, r, k):
    """P(|x| <= r) for ring k alone; r float64 tensor of any shape (r >= 0)."""
    big_r, s = self.radii[k], self.std
    phi = lambda z: 0.5 * tf.math.erfc(-z / _SQRT2)
    mass = (s**2 * (math.exp(-big_r**2 / (2 * s**2)) - tf.exp(-tf.square(r - big_r) / (2 * s**2)))
            + big_r * s * math.sqrt(2 * math.pi) * (phi((r - big_r) / s) - _std_normal_cdf(-big_r / s)))
    return 2.0 * math.pi * mass / math.exp(self.log_z[k])

  def _sample64(self, seed, n):
    k_seed, u_seed, a_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    k = tf.cast(tf.random.stateless_uniform([n], seed=k_seed, dtype=tf.float64)
                >= self.weights[0], tf.int32)
    u = tf.random.stateless_uniform([n], seed=u_seed, dtype=tf.float64)
    lo = tf.zeros([n], tf.float64)
    hi = tf.fill([n], tf.constant(max(self.radii) + 40.0 * self.std, tf.float64))
    for _ in range(64):  # bisection: the bracket shrinks to ~1e-19 of its width
      mid = 0.5 * (lo + hi)
      cdf = tf.where(k == 0, self.radial_cdf(mid, 0), self.radial_cdf(mid, 1))
      below = cdf < u
      lo = tf.where(below, mid, lo)
      hi = tf.where(below, hi, mid)
    r = 0.5 * (lo + hi)
    theta = tf.random.stateless_uniform([n], seed=a_seed, maxval=2 * math.pi, dtype=tf.float64)
    return tf.stack([r * tf.cos(theta), r * tf.sin(theta)], axis=1)


_EDGES = np.arange(-2.0, 2.5, 1.0)  # board lines -2, -1, 0, 1, 2


def _black_squares():
  """Lower-left corners (8, 2) of the black unit squares: cells (i, j), i + j even."""
  return np.array([(-2.0 + i, -2.0 + j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])


class Checkerboard(ToyDensity):
  """Uniform (density 1/8) on the black squares of a 4x4 board of unit squares on [-2, 2)^2.

  Cell (i, j) = [-2 + i, -1 + i) x [-2 + j, -1 + j) is black when i + j is even. The
  log-density is -log 8 on the support and -inf elsewhere (its gradient is 0 everywhere:
  use `checkerboard_smooth` for Langevin).
  """

  name = "checkerboard"

  @property
  def bounds(self):
    return ((-2.0, 2.0), (-2.0, 2.0))

  def _log_prob64(self, x):
    cell = tf.floor(x + 2.0)
    inside = tf.reduce_all((cell >= 0) & (cell <= 3), axis=1)
    black = tf.math.floormod(tf.reduce_sum(cell, axis=1), 2.0) == 0
    return tf.where(inside & black, tf.constant(-math.log(8.0), tf.float64),
                    tf.constant(-np.inf, tf.float64))

  def _sample64(self, seed, n):
    k_seed, u_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    k = tf.random.stateless_uniform([n], seed=k_seed, minval=0, maxval=8, dtype=tf.int32)
    offset = tf.random.stateless_uniform([n, 2], seed=u_seed, dtype=tf.float64)
    return tf.gather(tf.constant(_black_squares()), k) + offset


def _log_erfc(z):
  """log(erfc(z)) for float64 z, finite for all z (asymptotic series for z >= 20)."""
  big = z >= 20.0
  z_small = tf.where(big, tf.zeros_like(z), z)
  z_big = tf.where(big, z, tf.fill(tf.shape(z), tf.constant(20.0, z.dtype)))
  inv2 = 1.0 / tf.square(z_big)
  asym = (-tf.square(z_big) - tf.math.log(z_big) - _LOG_SQRT_PI +
          tf.math.log1p(-0.5 * inv2 + 0.75 * tf.square(inv2) - 1.875 * inv2**3))
  return tf.where(big, asym, tf.math.log(tf.math.erfc(z_small)))


def _log_normal_interval(lo, hi):
  """log(Phi(hi) - Phi(lo)) for float64 lo < hi, stable in both tails."""
  # Reflect so that the upper end is positive: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi).
  flip = hi < 0
  a = tf.where(flip, -hi, lo)
  b = tf.where(flip, -lo, hi)
  # Phi(b) - Phi(a) = (erfc(a / sqrt2) - erfc(b / sqrt2)) / 2, with erfc(b/sqrt2) < erfc(a/sqrt2).
  log_ea = _log_erfc(a / _SQRT2)
  log_eb = _log_erfc(b / _SQRT2)
  return math.log(0.5) + log_ea + tf.math.log1p(-tf.exp(log_eb - log_ea))


class SmoothCheckerboard(ToyDensity):
  """The checkerboard convolved with N(0, sigma^2 I); exact and finite everywhere.

  p(x, y) = (1/8) sum_{black cells [a, a+1) x [b, b+1)} [Phi((a+1-x)/sigma) - Phi((a-x)/sigma)]
                                                         [Phi((b+1-y)/sigma) - Phi((b-y)/sigma)].
  Samples are checkerboard samples plus sigma * N(0, I).
  """

  name = "checkerboard_smooth"

  def __init__(self, sigma=0.1):
    self.sigma = _check_positive("sigma", sigma)

  @property
  def bounds(self):
    r = 2.0 + 6.0 * self.sigma
    return ((-r, r), (-r, r))

  def _log_prob64(self, x):
    # log P(x + sigma * noise lands in column i) for the 4 columns (rows alike): [N, 4, 2].
    lo = (tf.constant(_EDGES[:4])[None, :, None] - x[:, None, :]) / self.sigma
    log_axis = _log_normal_interval(lo, lo + 1.0 / self.sigma)
    cells = _black_squares() + 2.0  # integer cell indices (i, j) of the 8 black cells
    log_cells = (tf.gather(log_axis[:, :, 0], cells[:, 0].astype(np.int32), axis=1) +
                 tf.gather(log_axis[:, :, 1], cells[:, 1].astype(np.int32), axis=1))  # [N, 8]
    return tf.reduce_logsumexp(log_cells, axis=1) - math.log(8.0)

  def _sample64(self, seed, n):
    board_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    noise = tf.random.stateless_normal([n, 2], seed=noise_seed, dtype=tf.float64)
    return Checkerboard()._sample64(board_seed, n) + self.sigma * noise  # pylint: disable=protected-access


_TOYS = {cls.name: cls for cls in (EightGaussians, TwoRings, Checkerboard, SmoothCheckerboard)}
TOY_NAMES = tuple(sorted(_TOYS))


def get_toy(name, **kwargs):
  """Returns the ToyDensity `name` (see TOY_NAMES), built with the keyword arguments.

  Args:
    name: 'eight_gaussians' (radius=2.0, std=0.2), 'two_rings' (radii=(1.0, 2.0), std=0.1,
      weights=(0.5, 0.5)), 'checkerboard' (no arguments) or 'checkerboard_smooth' (sigma=0.1).
    **kwargs: constructor arguments.
  """
  if name not in _TOYS:
    raise ValueError(f"toy density name must be one of {list(TOY_NAMES)}; got {name!r}")
  return _TOYS[name](**kwargs)


def _check_bins_and_bounds(toy, bins, bounds):
  if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
    raise ValueError(f"bins must be a positive int; got {bins!r}")
  bounds = toy.bounds if bounds is None else bounds
  b = np.asarray(bounds, dtype=np.float64)
  if b.shape != (2, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 1] > b[:, 0]):
    raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)) with min < max; got "
                     f"{bounds!r}")
  return int(bins), b


def bin_probabilities(toy, bins=50, bounds=None, refine=8):
  """Exact-density mass of each bin of a bins x bins grid, by the midpoint rule.

  Each bin is split into refine x refine cells and the density is evaluated at cell centres
  (error O(cell^2) for smooth densities; O(cell) only on bins cut by a checkerboard edge).

  Args:
    toy: a ToyDensity.
    bins: bins per axis.
    bounds: ((x_min, x_max), (y_min, y_max)); default toy.bounds.
    refine: midpoint points per bin per axis.

  Returns:
    (probs np.float64 [bins, bins] indexed [x_bin, y_bin], outside = 1 - probs.sum() clipped
    at 0, the mass outside the window).
  """
  bins, b = _check_bins_and_bounds(toy, bins, bounds)
  m = bins * refine
  centers = [b[d, 0] + (np.arange(m) + 0.5) * (b[d, 1] - b[d, 0]) / m for d in range(2)]
  gx, gy = np.meshgrid(centers[0], centers[1], indexing="ij")
  points = np.stack([gx.ravel(), gy.ravel()], axis=1)
  density = np.exp(toy.log_prob(tf.constant(points, tf.float64)).numpy()).reshape(m, m)
  cell_area = (b[0, 1] - b[0, 0]) * (b[1, 1] - b[1, 0]) / m**2
  probs = density.reshape(bins, refine, bins, refine).sum(axis=(1, 3)) * cell_area
  return probs, max(0.0, 1.0 - probs.sum())


def histogram_distances(samples, toy, bins=50, bounds=None, refine=8):
  """Compares a sample histogram with the exact bin probabilities of `toy`.

  Bins: a bins x bins grid over `bounds` plus one "outside" bin for everything outside the
  window (samples at +-inf included). With q the sample frequencies and p the exact bin
  masses (`bin_probabilities`):
    tv = 0.5 * sum |q - p|                  (total variation of the binned laws, in [0, 1])
    kl = sum_{q > 0} q log(q / p)           (KL(histogram || exact), nats; inf if q > 0 = p)
  Both are biased upward by sampling noise: about 0.5 * sum sqrt(2 p (1 - p) / (pi n)) for tv
  and (number of occupied bins - 1) / (2 n) for kl with n i.i.d. samples.

  Args:
    samples: [n, 2] float array or tensor (n >= 1), no NaN.
    toy: a ToyDensity.
    bins, bounds, refine: as in `bin_probabilities`.

  Returns:
    dict(tv=float, kl=float).
  """
  samples = np.asarray(samples, dtype=np.float64)
  if samples.ndim != 2 or samples.shape[1] != 2 or samples.shape[0] < 1:
    raise ValueError(f"samples must have shape [n, 2] with n >= 1; got {samples.shape}")
  if np.isnan(samples).any():
    raise ValueError(f"samples contain {int(np.isnan(samples).any(axis=1).sum())} rows with NaN")
  bins, b = _check_bins_and_bounds(toy, bins, bounds)
  probs, outside = bin_probabilities(toy, bins, b, refine)
  counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=bins, range=b)
  n = samples.shape[0]
  q = np.append(counts.ravel(), n - counts.sum()) / n
  p = np.append(probs.ravel(), outside)
  tv = 0.5 * np.abs(q - p).sum()
  occupied = q > 0
  with np.errstate(divide="ignore"):
    kl = float(np.sum(q[occupied] * (np.log(q[occupied]) - np.log(p[occupied]))))
  return {"tv": float(tv), "kl": kl}
