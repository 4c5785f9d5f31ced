"""Tests for ebm_tf.mcmc.init_strategies: bank draws, rejuvenation, age cap, burn-in graduation, checkpoints."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from ebm_tf.mcmc import init_strategies as ist


def setUpModule():
  # Two logical CPUs for the MirroredStrategy test; impossible once another test initialised TF.
  cpus = tf.config.list_physical_devices('CPU')
  try:
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError:
    pass


IMAGE_SHAPE = (4, 4, 1)
LATENT_DIM = 3


def _seed(*values):
  return tf.constant(values, tf.int32)


def _generator(z):
  """A fixed deterministic 'generator' [n, 3] -> [n, 4, 4, 1] in (-1, 1)."""
  w = tf.random.stateless_normal([LATENT_DIM, 16], _seed(7, 7))
  return tf.reshape(tf.tanh(tf.matmul(z, w)), [-1, *IMAGE_SHAPE])


def _persistent_bank(slots=20, replicas=3, p=0.5, cap=0, seed=(1, 2)):
  bank = ist.ChainBank('persistent', num_replicas=replicas, slots_per_replica=slots,
                       image_shape=IMAGE_SHAPE, rejuvenation_prob=p, max_mcmc_updates=cap)
  bank.initialize(seed=_seed(*seed))
  return bank


def _coop_bank(slots=12, replicas=2, p=0.5, cap=0):
  bank = ist.ChainBank('coop_persistent', num_replicas=replicas, slots_per_replica=slots,
                       image_shape=IMAGE_SHAPE, latent_dim=LATENT_DIM, rejuvenation_prob=p,
                       max_mcmc_updates=cap)
  z = tf.random.stateless_normal([replicas, slots, LATENT_DIM], _seed(3, 4))
  bank.initialize(images=tf.reshape(_generator(tf.reshape(z, [-1, LATENT_DIM])),
                                    [replicas, slots, *IMAGE_SHAPE]), latents=z)
  return bank


class ModesTest(tf.test.TestCase):

  def test_needs_bank(self):
    self.assertEqual([ist.InitMode(m).needs_bank for m in ist.MODES],
                     [False, False, True, True, True])

  def test_validate_mode_lists_valid_modes(self):
    self.assertEqual(ist.InitMode.parse('data').name, 'data')
    with self.assertRaisesRegex(ValueError, r"one of \['coop', 'data', 'persistent'.*got 'persist'"):
      ist.InitMode.parse('persist')

  def test_predicates(self):
    modes = [ist.InitMode(m) for m in ist.MODES]
    self.assertEqual([m.uses_generator for m in modes], [True, False, False, False, True])
    self.assertEqual([m.uses_latents for m in modes], [True, False, False, False, True])
    self.assertEqual([m.uses_data for m in modes], [False, True, False, True, False])
    self.assertEqual([m.latent_dim(4) for m in modes], [4, 0, 0, 0, 4])
    self.assertEqual(ist.InitMode.parse(modes[0]), ist.InitMode('coop'))
    self.assertEqual(str(modes[3]), 'data_persistent')

  def test_fresh_states_generator_chunks_and_dynamic_batch(self):
    seed = _seed(5, 6)
    whole, z = ist.fresh_states('coop', seed, 7, IMAGE_SHAPE, latent_dim=LATENT_DIM,
                                generator_fn=_generator)
    chunked, z2 = ist.fresh_states('coop', seed, 7, IMAGE_SHAPE, latent_dim=LATENT_DIM,
                                   generator_fn=_generator, generator_batch_size=3)
    self.assertAllEqual(z, z2)
    self.assertAllClose(whole, chunked)

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32)])
    def noise_like(x):
      return ist.fresh_states('persistent', seed, tf.shape(x)[0], IMAGE_SHAPE)[0]
    self.assertAllEqual(noise_like(tf.zeros([5, *IMAGE_SHAPE])),
                        ist.fresh_states('persistent', seed, 5, IMAGE_SHAPE)[0])


class ChainBankDrawTest(tf.test.TestCase):

  def test_draw_without_replacement_gathers_bank_contents(self):
    r, n, b = 3, 20, 7
    bank = _persistent_bank(slots=n, replicas=r)
    contents = bank.images.numpy()
    self.assertAllInRange(contents, -1.0, 1.0)
    self.assertGreater(contents.std(), 0.4)  # U[-1, 1] has std 0.577; zeros would fail.
    for i in range(5):
      d = bank.draw(_seed(10, i), b)
      self.assertEqual(d.indices.dtype, tf.int32)
      self.assertEqual(d.indices.shape, (r, b))
      self.assertEqual(d.images.shape, (r, b, *IMAGE_SHAPE))
      self.assertEqual(d.latents.shape, (r, b, 0))
      self.assertEqual(d.ages.shape, (r, b))
      self.assertEqual(d.rejuvenate.shape, (r, b))
      idx = d.indices.numpy()
      for row in range(r):
        self.assertLen(set(idx[row].tolist()), b)
        self.assertAllInRange(idx[row], 0, n - 1)
        self.assertAllEqual(d.images[row], contents[row, idx[row]])
      self.assertAllEqual(d.ages, np.zeros((r, b)))
    # Rows are independent draws.
    self.assertNotAllEqual(d.indices[0], d.indices[1])
    # Same seed, same draw.
    self.assertAllEqual(bank.draw(_seed(10, 4), b).indices, d.indices)

  def test_every_slot_is_drawn_uniformly(self):
    r, n, b, draws = 2, 10, 3, 400
    bank = _persistent_bank(slots=n, replicas=r)
    draw = tf.function(lambda seed: bank.draw(seed, b).indices)
    counts = np.zeros((r, n))
    for i in range(draws):
      np.add.at(counts, (np.arange(r)[:, None], draw(_seed(5, i)).numpy()), 1)
    q = b / n  # each slot is in a draw with probability B/N
    sigma = np.sqrt(draws * q * (1 - q))
    self.assertAllLess(np.abs(counts - draws * q), 4.5 * sigma)

  def test_full_draw_is_a_permutation(self):
    bank = _persistent_bank(slots=9, replicas=2)
    idx = bank.draw(_seed(0, 0), 9).indices.numpy()
    for row in idx:
      self.assertAllEqual(np.sort(row), np.arange(9))


class RejuvenationTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(0.0, 0.3, 1.0)
  def test_rate_is_p_without_cap(self, p):
    r, n, b, draws = 2, 500, 250, 40
    bank = _persistent_bank(slots=n, replicas=r, p=p, cap=0)
    # Old ages must not force anything when the cap is 0.
    idx = tf.tile(tf.range(n)[None], [r, 1])
    bank.write_back(idx, bank.images, None, tf.fill([r, n], 1000))
    hits = sum(int(tf.reduce_sum(tf.cast(bank.draw(_seed(9, i), b).rejuvenate, tf.int32)))
               for i in range(draws))
    total = r * b * draws
    sigma = np.sqrt(total * p * (1 - p))
    self.assertLessEqual(abs(hits - total * p), 4 * sigma + 1e-9)

  def test_rate_override(self):
    bank = _persistent_bank(slots=1000, replicas=1, p=0.0)
    d = bank.draw(_seed(1, 1), 1000, rejuvenation_prob=tf.constant(0.5))
    rate = float(tf.reduce_mean(tf.cast(d.rejuvenate, tf.float32)))
    self.assertBetween(rate, 0.5 - 4 * np.sqrt(0.25 / 1000), 0.5 + 4 * np.sqrt(0.25 / 1000))

  def test_rejuvenate_row(self):
    images = tf.reshape(tf.range(4 * 16, dtype=tf.float32), [4, *IMAGE_SHAPE])
    fresh = -images - 1.0
    latents = tf.reshape(tf.range(12, dtype=tf.float32), [4, 3])
    fresh_z = latents + 100.0
    ages = tf.constant([0, 3, 5, 1])
    mask = tf.constant([True, False, True, False])
    x, z, new_ages = ist.rejuvenate(images, latents, ages, mask, fresh, fresh_z)
    m = mask.numpy()
    self.assertAllEqual(x, np.where(m[:, None, None, None], fresh, images))
    self.assertAllEqual(z, np.where(m[:, None], fresh_z, latents))
    self.assertAllEqual(new_ages, [0, 4, 0, 2])
    # Without latents.
    x2, z2, _ = ist.rejuvenate(images, None, ages, mask, fresh)
    self.assertIsNone(z2)
    self.assertAllEqual(x2, x)

  @parameterized.named_parameters(('cap2', 2), ('no_cap', 0))
  def test_age_cap_limits_consecutive_segments(self, cap):
    """Simulates training; counts the K-step segments each chain serves between restarts."""
    r, n, b, iters = 2, 32, 8, 300
    bank = _persistent_bank(slots=n, replicas=r, p=0.05, cap=cap)

    @tf.function
    def step(seed):
      d = bank.draw(seed, b)
      fresh, _ = ist.fresh_states('persistent', tf.random.experimental.stateless_fold_in(seed, 7),
                                  (r, b), IMAGE_SHAPE)
      x, _, ages = ist.rejuvenate(d.images, d.latents, d.ages, d.rejuvenate, fresh)
      bank.write_back(d.indices, x + 0.001, None, ages)
      return d.indices, d.rejuvenate, d.ages

    segments = np.zeros((r, n), np.int64)  # 0 = initial state, not yet used
    restarted = np.zeros((r, n), bool)
    max_seen, forced_ok = 0, True
    rows = np.arange(r)[:, None]
    for i in range(iters):
      idx, rejuv, ages = (t.numpy() for t in step(_seed(42, i)))
      before = segments[rows, idx]
      if cap:
        # A chain that already served cap + 2 segments must restart; ages > cap always force.
        forced_ok &= bool(np.all(rejuv[before == cap + 2]))
        forced_ok &= bool(np.all(rejuv[ages > cap]))
      segments[rows, idx] = np.where(rejuv, 1, before + 1)
      restarted[rows, idx] |= rejuv
      max_seen = max(max_seen, segments.max())
    # The stored age is segments - 1 for restarted chains and segments for the initial states.
    self.assertTrue(restarted.any() and (~restarted).any() or restarted.all())
    self.assertAllEqual(bank.ages, np.where(restarted, segments - 1, segments))
    if cap:
      self.assertTrue(forced_ok)
      self.assertEqual(max_seen, cap + 2)  # never more than 4, and 4 occurs
    else:
      self.assertGreater(max_seen, 4)  # the negative control: without a cap chains run longer


class WriteBackTest(tf.test.TestCase):

  def test_states_latents_ages_land_in_their_slots(self):
    r, n, b = 2, 12, 5
    bank = _coop_bank(slots=n, replicas=r)
    before = [v.numpy() for v in (bank.images, bank.latents, bank.ages)]
    d = bank.draw(_seed(3, 3), b)
    new_x = d.images + 5.0
    new_z = d.latents - 7.0
    new_ages = d.ages + tf.reshape(tf.range(r * b), [r, b]) + 1
    bank.write_back(d.indices, new_x, new_z, new_ages)
    expected = [a.copy() for a in before]
    rows = np.arange(r)[:, None]
    idx = d.indices.numpy()
    for e, new in zip(expected, (new_x, new_z, new_ages)):
      e[rows, idx] = new.numpy()
    for e, v in zip(expected, (bank.images, bank.latents, bank.ages)):
      self.assertAllEqual(v, e)
    # The untouched slots are exactly the old ones.
    untouched = np.ones((r, n), bool)
    untouched[rows, idx] = False
    self.assertAllEqual(bank.images.numpy()[untouched], before[0][untouched])
    self.assertEqual(untouched.sum(), r * (n - b))


class CoopPersistentTest(tf.test.TestCase):

  def test_latents_persist_and_rejuvenated_slots_get_fresh_latents(self):
    r, n, b = 2, 12, 6
    bank = _coop_bank(slots=n, replicas=r, p=0.5)
    z0 = bank.latents.numpy()
    seen_rejuvenation = seen_kept = False
    for i in range(6):
      seed = _seed(8, i)
      d = bank.draw(seed, b)
      fresh_x, fresh_z = ist.fresh_states(
          'coop_persistent', tf.random.experimental.stateless_fold_in(seed, 3), (r, b), IMAGE_SHAPE,
          latent_dim=LATENT_DIM, generator_fn=_generator)
      self.assertAllClose(fresh_x, tf.reshape(_generator(tf.reshape(fresh_z, [-1, LATENT_DIM])),
                                              [r, b, *IMAGE_SHAPE]))
      xs, zs, ages = [], [], []
      for row in range(r):  # one replica's row at a time, as in the train step
        x, z, a = ist.rejuvenate(d.images[row], d.latents[row], d.ages[row], d.rejuvenate[row],
                                 fresh_x[row], fresh_z[row])
        xs.append(x + 0.01)  # stand-in for Langevin
        zs.append(z)
        ages.append(a)
      bank.write_back(d.indices, tf.stack(xs), tf.stack(zs), tf.stack(ages))
      m = d.rejuvenate.numpy()
      rows = np.arange(r)[:, None]
      stored_z = bank.latents.numpy()[rows, d.indices.numpy()]
      stored_x = bank.images.numpy()[rows, d.indices.numpy()]
      self.assertAllEqual(stored_z[m], fresh_z.numpy()[m])
      self.assertAllClose(stored_x[m], fresh_x.numpy()[m] + 0.01)
      self.assertAllEqual(stored_z[~m], d.latents.numpy()[~m])
      self.assertAllClose(stored_x[~m], d.images.numpy()[~m] + 0.01)
      seen_rejuvenation |= m.any()
      seen_kept |= (~m).any()
    self.assertTrue(seen_rejuvenation and seen_kept)
    # A slot never rejuvenated keeps its initial latent.
    bank_p0 = _coop_bank(slots=n, replicas=r, p=0.0)
    for i in range(4):
      d = bank_p0.draw(_seed(2, i), b)
      x, z, a = ist.rejuvenate(d.images, d.latents, d.ages, d.rejuvenate, d.images * 0, d.latents * 0)
      bank_p0.write_back(d.indices, x + 1.0, z, a)
    self.assertAllEqual(bank_p0.latents, z0)


class BurnInTest(tf.test.TestCase):

  def test_counters_start_uniform(self):
    g, r, n = 10, 2, 2000
    bank = ist.BurnInBank('persistent', num_replicas=r, slots_per_replica=n, image_shape=(2,),
                          graduation_draws=g, init_scale=0.5)
    bank.initialize(_seed(4, 4))
    c = bank.counters.numpy()
    self.assertEqual(c.min(), 0)
    self.assertEqual(c.max(), g - 1)
    counts = np.bincount(c.ravel(), minlength=g)
    sigma = np.sqrt(r * n * (1 / g) * (1 - 1 / g))
    self.assertAllLess(np.abs(counts - r * n / g), 4 * sigma)
    self.assertAllInRange(bank.images.numpy(), -0.5, 0.5)
    self.assertGreater(np.abs(bank.images.numpy()).max(), 0.45)

  def test_graduate_exactly_at_threshold(self):
    g = 10
    counters = tf.constant([0, 5, 9, 10, 11, 3])
    burn = tf.reshape(tf.range(6 * 2, dtype=tf.float32), [6, 2])
    fresh = -burn - 1.0
    z = tf.reshape(tf.range(6 * 3, dtype=tf.float32), [6, 3])
    mask, new_burn, new_z, new_counters = ist.graduate(burn, z, counters, g, fresh, z + 50.0)
    expected_mask = np.array([c >= g for c in [0, 5, 9, 10, 11, 3]])
    self.assertAllEqual(mask, expected_mask)
    self.assertAllEqual(new_burn, np.where(expected_mask[:, None], fresh, burn))
    self.assertAllEqual(new_z, np.where(expected_mask[:, None], z + 50.0, z))
    self.assertAllEqual(new_counters, [1, 6, 10, 0, 0, 4])

  def test_longrun_flow(self):
    """Tags every state with a unique id and follows it from burn-in to the update bank."""
    r, n_burn, n_upd, b, g = 2, 16, 24, 4, 3
    burn = ist.BurnInBank('data_persistent', num_replicas=r, slots_per_replica=n_burn,
                          image_shape=(1,), graduation_draws=g)
    upd = ist.ChainBank('data_persistent', num_replicas=r, slots_per_replica=n_upd,
                        image_shape=(1,), rejuvenation_prob=0.0)
    next_id = 1
    burn.initialize(_seed(0, 1), images=np.arange(1, r * n_burn + 1, dtype=np.float32).reshape(r, n_burn, 1))
    next_id += r * n_burn
    upd.initialize(images=-np.ones((r, n_upd, 1), np.float32))
    draws_since_fill = burn.counters.numpy().copy()  # oracle, starts at the random counters
    fresh_draws = {}  # id of a freshly filled state -> burn-in draws so far
    fresh_graduates = 0
    rows = np.arange(r)[:, None]
    graduated_total = 0
    for i in range(60):
      bd = burn.draw(_seed(1, i), b)
      ud = upd.draw(_seed(2, i), b)
      fresh = np.arange(next_id, next_id + r * b, dtype=np.float32).reshape(r, b, 1)
      next_id += r * b
      mask, new_burn, _, new_counters = ist.graduate(bd.images, None, bd.counters, g, fresh)
      update_batch = tf.where(mask[..., None], bd.images, ud.images)
      upd.write_back(ud.indices, update_batch, None, ud.ages + 1)
      burn.write_back(bd.indices, new_burn, None, new_counters)

      bidx = bd.indices.numpy()
      before = draws_since_fill[rows, bidx]
      m = mask.numpy()
      self.assertAllEqual(m, before >= g)  # graduation exactly when the counter reaches G
      ids = bd.images.numpy()[..., 0]
      for uid in ids.ravel():
        if uid in fresh_draws:
          fresh_draws[uid] += 1
      # A freshly filled state is drawn G + 1 times (counters 0..G) before it graduates.
      for uid in ids[m]:
        if uid in fresh_draws:
          self.assertEqual(fresh_draws.pop(uid), g + 1)
          fresh_graduates += 1
      draws_since_fill[rows, bidx] = np.where(m, 0, before + 1)
      fresh_draws.update({uid: 0 for uid in fresh[..., 0][m].tolist()})
      # The graduated states are the drawn burn-in states, now in the update bank.
      stored = upd.images.numpy()[rows, ud.indices.numpy()][..., 0]
      self.assertAllEqual(stored[m], ids[m])
      self.assertAllEqual(stored[~m], ud.images.numpy()[..., 0][~m])
      # Their burn-in slots hold the fresh states with counter 0.
      self.assertAllEqual(burn.images.numpy()[rows, bidx][..., 0][m], fresh[..., 0][m])
      self.assertAllEqual(burn.counters.numpy(), draws_since_fill)
      graduated_total += m.sum()
    self.assertGreater(graduated_total, 10)
    self.assertGreater(fresh_graduates, 0)


class CheckpointTest(tf.test.TestCase):

  def test_round_trip(self):
    bank = _coop_bank()
    burn = ist.BurnInBank('persistent', num_replicas=2, slots_per_replica=8, image_shape=IMAGE_SHAPE,
                          graduation_draws=5)
    burn.initialize(_seed(6, 6))
    d = bank.draw(_seed(1, 0), 4)
    bank.write_back(d.indices, d.images, d.latents, d.ages + 3)
    ckpt = tf.train.Checkpoint(bank=bank, burn=burn)
    path = ckpt.save(os.path.join(self.get_temp_dir(), 'ckpt'))
    saved = [v.numpy() for v in bank.variables + burn.variables]
    bank.initialize(images=tf.zeros_like(bank.images), latents=tf.ones_like(bank.latents))
    burn.initialize(_seed(7, 7))
    changed = [v.numpy() for v in bank.variables + burn.variables]
    self.assertLen(changed, 6)
    for a, b in zip(saved, changed):  # every variable was modified (but the empty burn-in latents)
      self.assertFalse(a.size and np.array_equal(a, b))
    ckpt.restore(path).assert_consumed()
    for a, v in zip(saved, bank.variables + burn.variables):
      self.assertAllEqual(v, a)


class TfFunctionTest(tf.test.TestCase):

  def test_train_step_bookkeeping_in_tf_function(self):
    r, b = 2, 4

    def make():
      bank = _coop_bank(slots=10, replicas=r, p=0.5, cap=2)
      burn = ist.BurnInBank('coop_persistent', num_replicas=r, slots_per_replica=6,
                            image_shape=IMAGE_SHAPE, latent_dim=LATENT_DIM, graduation_draws=2)
      z = tf.random.stateless_normal([r, 6, LATENT_DIM], _seed(2, 2))
      burn.initialize(_seed(3, 3), images=tf.reshape(_generator(tf.reshape(z, [-1, LATENT_DIM])),
                                                     [r, 6, *IMAGE_SHAPE]), latents=z)
      return bank, burn

    def step(bank, burn, seed):
      d = bank.draw(seed, b)
      bd = burn.draw(tf.random.experimental.stateless_fold_in(seed, 1), b)
      fx, fz = ist.fresh_states('coop_persistent', tf.random.experimental.stateless_fold_in(seed, 2),
                                (r, b), IMAGE_SHAPE, latent_dim=LATENT_DIM, generator_fn=_generator)
      x, z, ages = ist.rejuvenate(d.images, d.latents, d.ages, d.rejuvenate, fx, fz)
      m, nbx, nbz, nc = ist.graduate(bd.images, bd.latents, bd.counters, 2, fx, fz)
      x = tf.where(m[..., None, None, None], bd.images, x * 0.9)
      z = tf.where(m[..., None], bd.latents, z)
      bank.write_back(d.indices, x, z, ages)
      burn.write_back(bd.indices, nbx, nbz, nc)
      return tf.reduce_sum(x)

    eager_bank, eager_burn = make()
    graph_bank, graph_burn = make()
    graph_step = tf.function(lambda seed: step(graph_bank, graph_burn, seed),
                             input_signature=[tf.TensorSpec([2], tf.int32)])
    for i in range(5):
      step(eager_bank, eager_burn, _seed(11, i))
      graph_step(_seed(11, i))
    for a, v in zip(eager_bank.variables + eager_burn.variables,
                    graph_bank.variables + graph_burn.variables):
      self.assertAllClose(v, a)
    self.assertEqual(graph_step.experimental_get_tracing_count(), 1)

  def test_mirrored_strategy_rows(self):
    devices = [d.name for d in tf.config.list_logical_devices('CPU')][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    r, b = strategy.num_replicas_in_sync, 3
    print(f'MirroredStrategy over {r} replicas')
    bank = _persistent_bank(slots=8, replicas=r, p=0.5)  # created outside strategy.scope()

    @tf.function
    def train_step(seed):
      d = bank.draw(seed, b)
      fresh, _ = ist.fresh_states('persistent', tf.random.experimental.stateless_fold_in(seed, 1),
                                  (r, b), IMAGE_SHAPE)

      def replica_fn():
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        x, _, ages = ist.rejuvenate(d.images[rid], None, d.ages[rid], d.rejuvenate[rid], fresh[rid])
        return x + 1.0, ages

      x, ages = strategy.run(replica_fn)
      bank.write_back(d.indices, tf.stack(strategy.experimental_local_results(x)), None,
                      tf.stack(strategy.experimental_local_results(ages)))
      return d, fresh

    with strategy.scope():
      before = bank.images.numpy()
      d, fresh = train_step(_seed(5, 5))
    rows = np.arange(r)[:, None]
    idx = d.indices.numpy()
    m = d.rejuvenate.numpy()
    expected = np.where(m[..., None, None, None], fresh.numpy(), before[rows, idx]) + 1.0
    self.assertAllClose(bank.images.numpy()[rows, idx], expected)
    self.assertAllEqual(bank.ages.numpy()[rows, idx], np.where(m, 0, 1))


class BadArgsTest(parameterized.TestCase, tf.test.TestCase):

  _OK = dict(num_replicas=1, slots_per_replica=8, image_shape=(4, 4, 1), rejuvenation_prob=0.5)

  @parameterized.named_parameters(
      ('bad_mode', dict(mode='fresh'), r"one of \['coop'.*got 'fresh'"),
      ('no_bank_mode', dict(mode='coop'), r'only for the persistent modes.*got|mode .coop. starts'),
      ('p_high', dict(rejuvenation_prob=1.5), r'rejuvenation_prob must be a float in \[0, 1\]; got 1.5'),
      ('p_nan', dict(rejuvenation_prob=float('nan')), r'rejuvenation_prob.*got nan'),
      ('slots', dict(slots_per_replica=0), r'slots_per_replica must be an int >= 1; got 0'),
      ('replicas', dict(num_replicas=2.0), r'num_replicas must be an int >= 1; got 2.0'),
      ('shape', dict(image_shape=(4, 0, 1)), r'image_shape must be .*positive ints.*got \(4, 0, 1\)'),
      ('cap', dict(max_mcmc_updates=-1), r'max_mcmc_updates must be an int >= 0; got -1'),
      ('scale', dict(init_scale=0.0), r'init_scale must be a finite float > 0; got 0.0'),
      ('coop_needs_z', dict(mode='coop_persistent'), r'latent_dim must be > 0'),
      ('z_without_coop', dict(latent_dim=4), r"latent_dim is only used by the coop modes.*got 4"),
  )
  def test_chain_bank_constructor(self, override, pattern):
    kwargs = dict(self._OK, mode='persistent')
    kwargs.update(override)
    mode = kwargs.pop('mode')
    with self.assertRaisesRegex(ValueError, pattern):
      ist.ChainBank(mode, **kwargs)

  def test_burn_in_constructor(self):
    with self.assertRaisesRegex(ValueError, r'graduation_draws must be an int >= 1; got 0'):
      ist.BurnInBank('persistent', num_replicas=1, slots_per_replica=4, image_shape=(2,),
                     graduation_draws=0)

  def test_inside_strategy_scope(self):
    with tf.distribute.OneDeviceStrategy('/cpu:0').scope():
      with self.assertRaisesRegex(ValueError, r'outside strategy.scope\(\)'):
        ist.ChainBank('persistent', **self._OK)

  def test_draw_and_initialize(self):
    bank = ist.ChainBank('data_persistent', **self._OK)
    with self.assertRaisesRegex(ValueError, r'batch_size_per_replica must be <= slots_per_replica=8; got 9'):
      bank.draw(_seed(0, 0), 9)
    with self.assertRaisesRegex(ValueError, r'seed must be an int32/int64 tensor of shape \[2\]'):
      bank.draw(tf.constant([1, 2, 3]), 2)
    with self.assertRaisesRegex(ValueError, r'images must have shape \[1, 8, 4, 4, 1\]; got \(1, 8, 4, 4, 3\)'):
      bank.initialize(images=np.zeros((1, 8, 4, 4, 3), np.float32))
    with self.assertRaisesRegex(ValueError, r"'data_persistent' needs initial images"):
      bank.initialize()
    with self.assertRaisesRegex(ValueError, r"'persistent' fills the bank .*images and latents must be None"):
      ist.ChainBank('persistent', **self._OK).initialize(images=np.zeros((1, 8, 4, 4, 1)), seed=_seed(0, 0))
    with self.assertRaisesRegex(ValueError, r'seed must be a stateless seed'):
      ist.ChainBank('persistent', **self._OK).initialize()
    coop = ist.ChainBank('coop_persistent', latent_dim=2, **self._OK)
    with self.assertRaisesRegex(ValueError, r'needs the latents'):
      coop.initialize(images=np.zeros((1, 8, 4, 4, 1), np.float32))
    with self.assertRaisesRegex(ValueError, r'write_back needs latents of shape \[1, 2, 2\]'):
      coop.write_back(tf.constant([[0, 1]]), tf.zeros([1, 2, 4, 4, 1]), None, tf.zeros([1, 2], tf.int32))
    with self.assertRaisesRegex(ValueError, r'images must have shape'):
      bank.write_back(tf.constant([[0, 1]]), tf.zeros([1, 3, 4, 4, 1]), None, tf.zeros([1, 2], tf.int32))

  def test_pure_functions(self):
    x = tf.zeros([2, 3])
    with self.assertRaisesRegex(ValueError, r'fresh_latents'):
      ist.rejuvenate(x, tf.zeros([2, 4]), tf.zeros([2], tf.int32), tf.constant([True, False]), x)
    with self.assertRaisesRegex(ValueError, r'mask must have the shape of ages'):
      ist.rejuvenate(x, None, tf.zeros([2], tf.int32), tf.constant([True]), x)
    with self.assertRaisesRegex(ValueError, r'data_images of shape \[2, 3\] is required'):
      ist.fresh_states('data', _seed(0, 0), 2, (3,))
    with self.assertRaisesRegex(ValueError, r'generator_fn is required'):
      ist.fresh_states('coop', _seed(0, 0), 2, (3,), latent_dim=2)
    with self.assertRaisesRegex(ValueError, r'generator_fn must return \[n, 3\]'):
      ist.fresh_states('coop', _seed(0, 0), 2, (3,), latent_dim=2, generator_fn=lambda z: z)


if __name__ == '__main__':
  tf.test.main()
