"""Exact-density evaluation of Langevin chains on the 2-D toys: does a model stay on the data?

A valid ("longrun") EBM keeps chains on the data density when they run 10-100x longer than the
chains it was trained with; a shortrun EBM's samples drift away (docs/paper_settings.md sections
6.1, 8.3). On a 2-D toy the data density is known exactly, so the drift is measured exactly: chains
start from `x_init`, run through the project's one sampler (`ebm_tf.mcmc.langevin.make_sampler`),
and at each recorded step their histogram is compared with the exact bin masses
(`toy_densities.histogram_distances`: total variation and KL of the binned laws).

    curve = chain_distance_curve(energy_fn, toy, x_init, seed, [0, 100, 1000, 10000],
                                 step_size=0.05, temperature=1.0, bins=25)
    plot_distance_curves({"longrun": curve}, "curves.png", reference=iid_reference(toy, n, seed))

Every function is a pure function of its arguments (stateless seeds); nothing runs at import.
"""

import json
import math
import os
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ebm_tf.data import toy_densities
from ebm_tf.internal import checks
from ebm_tf.internal import file_io
from ebm_tf.mcmc import langevin
from ebm_tf.training import summaries


def _check_record_steps(record_steps) -> List[int]:
  try:
    steps = list(record_steps)
  except TypeError:
    steps = None
  if (not steps or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                       for s in steps)):
    raise ValueError("record_steps must be a non-empty sequence of ints >= 0 in strictly "
                     f"increasing order, e.g. [0, 100, 1000]; got {record_steps!r}")
  steps = [int(s) for s in steps]
  if steps[0] < 0 or any(b <= a for a, b in zip(steps, steps[1:])):
    raise ValueError("record_steps must be ints >= 0 in strictly increasing order, e.g. "
                     f"[0, 100, 1000]; got {steps}")
  return steps


def _window(toy: toy_densities.ToyDensity, bounds) -> np.ndarray:
  b = np.asarray(toy.bounds if bounds is None else bounds, np.float64)
  if b.shape != (2, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 1] > b[:, 0]):
    raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)) with min < max; got "
                     f"{bounds!r}")
  return b


def chain_states(energy_fn: Callable[[tf.Tensor], tf.Tensor], x_init, seed,
                 record_steps: Sequence[int], *, step_size: float, temperature: float = 1.0,
                 tau: Optional[float] = None, jit_compile: bool = False
                 ) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
  """Runs Langevin chains from `x_init` and yields their states at each recorded step.

  The chains run in segments between successive boundaries 0 = s_0 < s_1 < ... (the positive
  entries of `record_steps`); segment j (from s_j to s_{j+1}) is one call of a
  `langevin.make_sampler` function with seed `stateless_fold_in(seed, j)` (cast to int32). A
  chain whose state became non-finite (a diverging energy) is frozen there and reported as is.

  Args:
    energy_fn: points float32 [B, 2] -> energies [B] (e.g. `models.energy_fn(ebm)` or
      `toy.energy`).
    x_init: float [N, 2], the chains' initial states (finite).
    seed: int32/int64 [2] stateless seed.
    record_steps: ints >= 0, strictly increasing; 0 records `x_init` itself.
    step_size: Langevin eps > 0 (drift eps^2/2 grad U, noise eps).
    temperature: T > 0, U = E / T.
    tau: optional std of the Gaussian term ||x||^2 / (2 tau^2) in U (None: off).
    jit_compile: XLA-compile the sampler.

  Yields:
    (step, states np.float32 [N, 2], energies np.float32 [N]): raw E (not divided by T) at the
    states; NaN for non-finite states.

  Raises:
    ValueError: bad record_steps (empty, negative, not strictly increasing, not ints), x_init
      not [N, 2] floats or not finite, a bad seed.
  """
  steps = _check_record_steps(record_steps)
  x = checks.check_points_2d(x_init, "x_init").astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"x_init must be finite; got {int((~np.isfinite(x)).any(axis=1).sum())} "
                     "rows with NaN/inf")
  seed = checks.check_seed(seed)
  fixed = {} if tau is None else {"tau": float(tau)}
  sampler = langevin.make_sampler(energy_fn, (2,), jit_compile=jit_compile, **fixed)
  energy = tf.function(lambda points: tf.cast(energy_fn(points), tf.float32))
  energies = np.asarray(energy(tf.constant(x)), np.float32)
  done = 0
  segment = 0
  for step in steps:
    if step > done:
      live = np.all(np.isfinite(x), axis=1)
      if live.any():
        result = sampler(tf.constant(x[live]),
                         tf.cast(tf.random.experimental.stateless_fold_in(seed, segment),
                                 tf.int32),
                         tf.constant(step - done, tf.int32), tf.constant(step_size, tf.float32),
                         tf.constant(temperature, tf.float32))
        x = x.copy()
        x[live] = result.samples.numpy()
        energies = np.full(len(x), np.nan, np.float32)
        energies[live] = result.energies.numpy()
      energies = np.where(np.all(np.isfinite(x), axis=1), energies, np.nan).astype(np.float32)
      segment += 1
      done = step
    yield step, x, energies


def chain_distance_curve(energy_fn: Callable[[tf.Tensor], tf.Tensor],
                         toy: toy_densities.ToyDensity, x_init, seed,
                         record_steps: Sequence[int], *, step_size: float, temperature: float,
                         bins: int = 50, tau: Optional[float] = None, bounds=None,
                         jit_compile: bool = False) -> List[Dict[str, float]]:
  """Exact distances of Langevin chains to `toy` at each recorded step.

  Args:
    energy_fn, x_init, seed, record_steps, step_size, temperature, tau, jit_compile: as in
      `chain_states`.
    toy: the data density, a `toy_densities.ToyDensity`.
    bins: histogram bins per axis (`histogram_distances`).
    bounds: the histogram window ((x_min, x_max), (y_min, y_max)); default `toy.bounds`.

  Returns:
    One JSON-friendly dict per recorded step, in order:
      step: int; tv: float in [0, 1] and kl: float >= 0 (nats, inf when samples sit where the
      exact bin mass is 0), the `histogram_distances` of the N states (non-finite states count
      in the "outside" bin); mean_energy: mean raw E over the finite states (NaN if none);
      frac_outside_bounds: fraction of states outside `bounds` or non-finite; frac_nonfinite:
      fraction of non-finite states.
    Both distances carry an upward sampling bias; compare with `iid_reference(toy, N, ...)`.
  """
  return chain_distance_curves(energy_fn, toy, {"x": x_init}, seed, record_steps,
                               step_size=step_size, temperature=temperature, bins=bins,
                               tau=tau, bounds=bounds, jit_compile=jit_compile)["x"]


def chain_distance_curves(energy_fn: Callable[[tf.Tensor], tf.Tensor],
                          toy: toy_densities.ToyDensity, x_inits: Mapping[str, object], seed,
                          record_steps: Sequence[int], *, step_size: float, temperature: float,
                          bins: int = 50, tau: Optional[float] = None, bounds=None,
                          jit_compile: bool = False) -> Dict[str, List[Dict[str, float]]]:
  """`chain_distance_curve` for several groups of chains run as one batch (one sampler call per
  segment: cheaper than one call per group on small models).

  Args:
    x_inits: group name -> float [N_g, 2] initial states; the groups are concatenated in the
      mapping's order into one [sum N_g, 2] batch for `chain_states`, so a single group gives
      exactly `chain_distance_curve`.
    Others: as in `chain_distance_curve`.

  Returns:
    group name -> that group's curve (see `chain_distance_curve`).
  """
  if not isinstance(toy, toy_densities.ToyDensity):
    raise ValueError(f"toy must be a toy_densities.ToyDensity (see get_toy); got {toy!r}")
  if not isinstance(x_inits, Mapping) or not x_inits:
    raise ValueError(f"x_inits must be a non-empty dict of name -> [N, 2] points; got "
                     f"{type(x_inits).__name__}")
  names = list(x_inits)
  groups = [checks.check_points_2d(x_inits[name], "x_init" if names == ["x"] else f"x_inits[{name!r}]")
            for name in names]
  offsets = np.cumsum([0] + [len(g) for g in groups])
  window = _window(toy, bounds)
  curves = {name: [] for name in names}
  for step, all_states, all_energies in chain_states(
      energy_fn, np.concatenate(groups).astype(np.float32), seed, record_steps,
      step_size=step_size, temperature=temperature, tau=tau, jit_compile=jit_compile):
    for i, name in enumerate(names):
      states = all_states[offsets[i]:offsets[i + 1]]
      energies = all_energies[offsets[i]:offsets[i + 1]]
      finite = np.all(np.isfinite(states), axis=1)
      # histogram_distances rejects NaN; +inf lands in its "outside" bin.
      scored = np.where(finite[:, None], states, np.inf)
      distances = toy_densities.histogram_distances(scored, toy, bins=bins, bounds=window)
      inside = finite & np.all((states >= window[:, 0]) & (states <= window[:, 1]), axis=1)
      curves[name].append({
          "step": int(step), "tv": distances["tv"], "kl": distances["kl"],
          "mean_energy": float(np.mean(energies[finite])) if finite.any() else math.nan,
          "frac_outside_bounds": float(1.0 - inside.mean()),
          "frac_nonfinite": float(1.0 - finite.mean()),
      })
  return curves


def expected_iid_tv_bound(toy: toy_densities.ToyDensity, n: int, bins: int = 50,
                          bounds=None) -> float:
  """An upper bound on E[tv] of `histogram_distances` for n i.i.d. exact samples.

  With q the frequencies of n i.i.d. draws from bin masses p (plus the outside bin),
  E|q_i - p_i| <= sqrt(p_i (1 - p_i) / n) (Jensen), so E[tv] <= 0.5 sum_i sqrt(p_i (1 - p_i) / n).
  TV moves by at most 1/n when one sample moves, so (McDiarmid)
  P(tv > E[tv] + t) <= exp(-2 n t^2): e.g. t = 0.05 at n = 2000 has probability < 5e-5.

  Returns:
    float, the bound on the expected TV.
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n must be a positive int; got {n!r}")
  probs, outside = toy_densities.bin_probabilities(toy, bins, _window(toy, bounds))
  p = np.append(probs.ravel(), outside)
  return float(0.5 * np.sum(np.sqrt(p * np.clip(1.0 - p, 0.0, 1.0) / n)))


def iid_reference(toy: toy_densities.ToyDensity, n: int, seed, bins: int = 50,
                  bounds=None) -> Dict[str, float]:
  """tv and kl of n exact i.i.d. samples `toy.sample(seed, n)`: the floor a perfect sampler
  reaches with n chains (the sampling bias of the histogram distances), plus the
  `expected_iid_tv_bound` as 'tv_bound'."""
  samples = toy.sample(checks.check_seed(seed), n).numpy()
  window = _window(toy, bounds)
  result = toy_densities.histogram_distances(samples, toy, bins=bins, bounds=window)
  result["tv_bound"] = expected_iid_tv_bound(toy, n, bins, window)
  return result


def model_bin_probabilities(energy_fn: Callable[[tf.Tensor], tf.Tensor], bins: int,
                            bounds, *, temperature: float = 1.0, tau: Optional[float] = None,
                            refine: int = 8, batch_size: int = 65536) -> np.ndarray:
  """The model's own law exp(-U) binned on a grid, U = E / T [+ ||x||^2 / (2 tau^2)].

  The law the Langevin sampler targets (`ebm_tf.mcmc.langevin`), normalised on the window: each of
  the bins x bins bins is split into refine x refine cells, U is evaluated at the cell centres
  (midpoint rule, as `toy_densities.bin_probabilities`) and the masses are divided by their
  sum (a log-sum-exp in float64). Mass the model puts outside the window is not seen: the
  result sums to 1 over the window.

  Args:
    energy_fn: points float32 [B, 2] -> energies [B] (e.g. `models.energy_fn(ebm)`).
    bins: bins per axis (positive int).
    bounds: ((x_min, x_max), (y_min, y_max)), min < max, finite.
    temperature: T > 0.
    tau: optional std > 0 of the Gaussian term (None or 0: off).
    refine: midpoint cells per bin per axis (positive int).
    batch_size: points per energy call.

  Returns:
    np.float64 [bins, bins] indexed [x_bin, y_bin], non-negative, summing to 1.

  Raises:
    ValueError: bad bins / refine / bounds / temperature / tau, or a non-finite energy on the
      grid (named with the number of such points).
  """
  for name, value in (("bins", bins), ("refine", refine), ("batch_size", batch_size)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive int; got {value!r}")
  b = np.asarray(bounds, np.float64)
  if b.shape != (2, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 1] > b[:, 0]):
    raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)) with min < max; got "
                     f"{bounds!r}")
  if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
          and temperature > 0):
    raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
  if tau is not None and not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 0):
    raise ValueError(f"tau must be None or a finite number >= 0; got {tau!r}")
  m = int(bins) * int(refine)
  centers = [b[d, 0] + (np.arange(m) + 0.5) * (b[d, 1] - b[d, 0]) / m for d in range(2)]
  gx, gy = np.meshgrid(centers[0], centers[1], indexing="ij")
  points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
  energy = tf.function(lambda x: tf.cast(energy_fn(x), tf.float32), reduce_retracing=True)
  energies = np.concatenate([
      np.asarray(energy(tf.constant(points[i:i + batch_size])), np.float64)
      for i in range(0, len(points), batch_size)])
  if not np.all(np.isfinite(energies)):
    raise ValueError(f"the energy is not finite at {int((~np.isfinite(energies)).sum())} of "
                     f"{len(points)} grid points")
  potential = energies / float(temperature)
  if tau:
    potential = potential + np.sum(points.astype(np.float64)**2, axis=1) / (2.0 * float(tau)**2)
  log_w = -potential - np.max(-potential)
  w = np.exp(log_w)
  probs = w.reshape(int(bins), int(refine), int(bins), int(refine)).sum(axis=(1, 3))
  return probs / probs.sum()


def model_density_distances(energy_fn: Callable[[tf.Tensor], tf.Tensor],
                            toy: toy_densities.ToyDensity, *, temperature: float = 1.0,
                            tau: Optional[float] = None, bins: int = 50, bounds=None,
                            refine: int = 8) -> Dict[str, float]:
  """Is the model the right density? The binned distance of exp(-U) to the exact law.

  No sampling is involved: the model's bin masses (`model_bin_probabilities`, normalised on
  the window) are compared with the exact bin masses of `toy` (`toy_densities.bin_probabilities`,
  plus the exact mass outside the window, where the model has none). This separates training
  bias (the model's law is wrong: this distance) from sampling bias (the chains do not sample
  the model's law: `chain_distance_curve` much above this distance plus the i.i.d. floor).

  Args:
    energy_fn, temperature, tau, refine: as in `model_bin_probabilities`.
    toy: the data density, a `toy_densities.ToyDensity`.
    bins: bins per axis; bounds: the window (default `toy.bounds`).

  Returns:
    dict(tv: float in [0, 1], the total variation of the two binned laws; kl: float >= 0,
    KL(model || exact) in nats over the bins (as the chains' kl), inf if the model puts mass
    where the exact law has none).
  """
  if not isinstance(toy, toy_densities.ToyDensity):
    raise ValueError(f"toy must be a toy_densities.ToyDensity (see get_toy); got {toy!r}")
  window = _window(toy, bounds)
  model = model_bin_probabilities(energy_fn, bins, window, temperature=temperature, tau=tau,
                                  refine=refine)
  exact, outside = toy_densities.bin_probabilities(toy, bins, window, refine)
  q = np.append(model.ravel(), 0.0)
  p = np.append(exact.ravel(), outside)

  on = q > 0
  with np.errstate(divide="ignore"):
    kl = float(np.sum(q[on] * (np.log(q[on]) - np.log(p[on]))))
  return {"tv": float(0.5 * np.abs(q - p).sum()), "kl": kl}


def _json_safe(value):
  if isinstance(value, Mapping):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else ("inf" if value > 0 else
                                               "-inf" if value < 0 else "nan")
  if isinstance(value, np.integer):
    return int(value)
  return value


def write_json(payload, path: str) -> str:
  """Writes `payload` (dicts, lists, numbers, strings; e.g. curves) as strict JSON at `path`.

  Non-finite floats become the strings "inf", "-inf", "nan" (JSON has no such numbers). The
  file is written to a temporary name and renamed. Returns `path`.
  """
  return file_io.write_text_atomic(
      path, json.dumps(_json_safe(payload), indent=1, allow_nan=False) + "\n")


def _save_figure(fig, path: str) -> str:
  return file_io.save_figure_atomic(fig, path, dpi=100)


def plot_distance_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], path: str, *,
                         reference: Optional[Mapping[str, float]] = None,
                         title: Optional[str] = None) -> str:
  """Plots TV and KL against the chain step, one line per curve, as a PNG.

  Args:
    curves: name -> a `chain_distance_curve` result (dicts with 'step', 'tv', 'kl').
    path: destination ending in .png (parent directories are created).
    reference: optional dict with 'tv' and 'kl' (e.g. `iid_reference`) drawn as dashed lines:
      the level of a perfect sampler with the same number of chains.
    title: optional figure title.

  The x axis is symmetric-log (linear below 1), so step 0 is shown; the KL axis is
  logarithmic. Non-finite values (and KL values <= 0) are not drawn. Returns `path`.
  """
  path = summaries.check_png_path(path)
  if not isinstance(curves, Mapping) or not curves:
    raise ValueError(f"curves must be a non-empty dict of name -> curve; got {curves!r}")
  for name, curve in curves.items():
    if not curve or any(not {"step", "tv", "kl"} <= set(point) for point in curve):
      raise ValueError(f"curve {name!r} must be a non-empty list of dicts with 'step', 'tv' and "
                       "'kl' (a chain_distance_curve result)")
  fig, axes = summaries.agg_figure(11.0, 4.2, ncols=2)
  last_step = max(point["step"] for curve in curves.values() for point in curve)
  for ax, key, label in ((axes[0], "tv", "total variation (binned)"),
                         (axes[1], "kl", "KL(histogram || exact), nats (log scale)")):
    for name, curve in curves.items():
      steps = np.array([point["step"] for point in curve], np.float64)
      values = np.array([point[key] for point in curve], np.float64)
      ok = np.isfinite(values) & ((values > 0) if key == "kl" else True)
      ax.plot(steps[ok], values[ok], marker="o", label=name)
    if reference is not None and np.isfinite(reference.get(key, np.nan)):
      ax.axhline(reference[key], color="gray", linestyle="--", label="i.i.d. exact samples")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0.0, max(1.0, 1.5 * last_step))
    ax.set_xlabel("Langevin steps (0, then log scale)")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
  axes[0].set_ylim(bottom=0.0)
  axes[1].set_yscale("log")
  axes[0].legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return _save_figure(fig, path)
