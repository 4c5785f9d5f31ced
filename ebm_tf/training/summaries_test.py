"""Tests for ebm_tf.training.summaries: image grids, PNG files, TensorBoard events, the progress line."""

import os
import sys
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from ebm_tf.training import summaries


def _constant_images(values, size=2, channels=1):
  """[len(values), size, size, channels] images, image i filled with values[i]."""
  return np.stack([np.full((size, size, channels), v, np.float32) for v in values])


def _read_events(logdir):
  """All summary values under `logdir` as a list of (step, tag, plugin name, Summary.Value)."""
  from tensorflow.core.util import event_pb2  # pylint: disable=g-import-not-at-top
  out = []
  for name in sorted(os.listdir(logdir)):
    for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        out.append((event.step, value.tag, value.metadata.plugin_data.plugin_name, value))
  return out


class ImageGridTest(tf.test.TestCase, parameterized.TestCase):

  def test_known_2x2_grid(self):
    # Values -1, 1, 0, 0.5 map to round((x + 1) * 127.5): 0, 255, 128 (127.5 rounds to even), 191.
    grid = summaries.image_grid(_constant_images([-1.0, 1.0, 0.0, 0.5]), padding=1, pad_value=77)
    self.assertEqual(grid.dtype, np.uint8)
    self.assertEqual(grid.shape, (7, 7, 1))  # 2 * 2 pixels + 3 padding lines each way.
    expected = np.full((7, 7, 1), 77, np.uint8)
    expected[1:3, 1:3] = 0      # row 0, col 0
    expected[1:3, 4:6] = 255    # row 0, col 1
    expected[4:6, 1:3] = 128    # row 1, col 0
    expected[4:6, 4:6] = 191    # row 1, col 1
    self.assertAllEqual(grid, expected)

  def test_clips_out_of_range_values(self):
    grid = summaries.image_grid(_constant_images([-7.0, 3.0]), num_rows=1, padding=0)
    self.assertAllEqual(grid[:, :2], np.zeros((2, 2, 1)))
    self.assertAllEqual(grid[:, 2:], np.full((2, 2, 1), 255))

  def test_padding_zero_equals_tiling(self):
    images = tf.random.stateless_uniform([6, 3, 5, 3], seed=[1, 2], minval=-1, maxval=1)
    grid = summaries.image_grid(images, num_rows=2, padding=0)
    pixels = np.round((images.numpy().astype(np.float64) + 1) * 127.5).astype(np.uint8)
    expected = np.concatenate([np.concatenate(list(pixels[r * 3:(r + 1) * 3]), axis=1)
                               for r in range(2)], axis=0)
    self.assertAllEqual(grid, expected)

  @parameterized.parameters((1, 1, 1), (4, 2, 2), (5, 2, 3), (8, 3, 3), (10, 3, 4), (16, 4, 4))
  def test_default_layout(self, n, rows, cols):
    grid = summaries.image_grid(_constant_images([0.0] * n, size=4), padding=2)
    self.assertEqual(grid.shape, (rows * 4 + (rows + 1) * 2, cols * 4 + (cols + 1) * 2, 1))

  def test_empty_cells_are_padding(self):
    grid = summaries.image_grid(_constant_images([1.0] * 3), num_rows=2, padding=0, pad_value=9)
    self.assertAllEqual(grid[2:, 2:], np.full((2, 2, 1), 9))
    self.assertAllEqual(grid[2:, :2], np.full((2, 2, 1), 255))

  @parameterized.named_parameters(
      ("rank3", np.zeros([2, 2, 3], np.float32), r"shape \[batch, height, width, 1 or 3\]"),
      ("two_channels", np.zeros([2, 2, 2, 2], np.float32), r"got \[2, 2, 2, 2\]"),
      ("empty", np.zeros([0, 2, 2, 1], np.float32), "batch >= 1"),
      ("integers", np.zeros([1, 2, 2, 1], np.uint8), "floats"),
      ("nan", np.full([1, 2, 2, 1], np.nan, np.float32), "4 NaN/inf"),
  )
  def test_bad_images(self, images, message):
    with self.assertRaisesRegex(ValueError, message):
      summaries.image_grid(images)

  def test_bad_num_rows(self):
    with self.assertRaisesRegex(ValueError, r"num_rows must be an int in \[1, 2\]"):
      summaries.image_grid(_constant_images([0.0, 0.0]), num_rows=3)


class SaveScatterPlotTest(tf.test.TestCase):

  def test_scatter_plot(self):
    path = os.path.join(self.get_temp_dir(), "points.png")
    points = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 0.0], [np.nan, 0.0]], np.float32)
    summaries.save_scatter_plot(points, path, bounds=((-3, 3), (-3, 3)), title="s")
    self.assertEqual(tf.io.decode_png(tf.io.read_file(path)).numpy().ndim, 3)
    with self.assertRaisesRegex(ValueError, r"points must be a float array of shape \[N, 2\]"):
      summaries.save_scatter_plot(np.zeros([3, 3]), path)
    with self.assertRaisesRegex(ValueError, "bounds must be"):
      summaries.save_scatter_plot(points, path, bounds=((1, -1), (0, 1)))


class SaveImageGridTest(tf.test.TestCase):

  def test_png_decodes_to_the_grid_and_leaves_no_temp_file(self):
    directory = os.path.join(self.get_temp_dir(), "new", "samples")
    path = os.path.join(directory, "grid.png")
    images = tf.random.stateless_uniform([5, 4, 4, 3], seed=[3, 4], minval=-1.2, maxval=1.2)
    self.assertEqual(summaries.save_image_grid(images, path, num_rows=2), path)
    decoded = tf.io.decode_png(tf.io.read_file(path)).numpy()
    self.assertAllEqual(decoded, summaries.upscale_for_display(
        summaries.image_grid(images, num_rows=2)))
    self.assertEqual(os.listdir(directory), ["grid.png"])
    # Overwriting replaces the file; min_width=0 keeps one pixel per image pixel.
    summaries.save_image_grid(_constant_images([1.0], size=3, channels=1), path, min_width=0)
    self.assertAllEqual(tf.io.decode_png(tf.io.read_file(path)).shape, [5, 5, 1])
    self.assertEqual(os.listdir(directory), ["grid.png"])

  def test_grids_are_upscaled_to_a_readable_width_by_pixel_repetition(self):
    images = tf.random.stateless_uniform([64, 8, 8, 1], seed=[1, 2], minval=-1.0, maxval=1.0)
    grid = summaries.image_grid(images)  # 8 x 8 digits: 73 x 73 pixels
    self.assertAllEqual(grid.shape, [73, 73, 1])
    big = summaries.upscale_for_display(grid)
    self.assertAllEqual(big.shape, [73 * 4, 73 * 4, 1])  # the smallest factor reaching 256
    self.assertAllEqual(big[::4, ::4], grid)
    for dy in range(4):
      for dx in range(4):
        self.assertAllEqual(big[dy::4, dx::4], grid)
    wide = np.zeros([10, 300, 3], np.uint8)
    self.assertIs(summaries.upscale_for_display(wide), wide)
    path = os.path.join(self.get_temp_dir(), "digits.png")
    summaries.save_image_grid(images, path)
    self.assertGreaterEqual(tf.io.decode_png(tf.io.read_file(path)).shape[1], 256)
    with self.assertRaisesRegex(ValueError, "min_width must be an int >= 0; got -1"):
      summaries.upscale_for_display(grid, -1)
    with self.assertRaisesRegex(ValueError, r"grid must have shape \[height, width, channels\]"):
      summaries.upscale_for_display(grid[..., 0])

  def test_failed_write_leaves_nothing(self):
    directory = self.get_temp_dir()
    path = os.path.join(directory, "failed.png")
    with mock.patch.object(os, "replace", side_effect=OSError("rename failed")):
      with self.assertRaisesRegex(OSError, "rename failed"):
        summaries.save_image_grid(_constant_images([0.0]), path)
    self.assertFalse([f for f in os.listdir(directory) if "failed.png" in f])

  def test_bad_path(self):
    with self.assertRaisesRegex(ValueError, "path must end with .png; got 'x.jpg'"):
      summaries.save_image_grid(_constant_images([0.0]), "x.jpg")


class SummaryWriterTest(tf.test.TestCase):

  def test_scalars_read_back(self):
    logdir = os.path.join(self.get_temp_dir(), "scalars")
    written = {1: {"loss": 0.5, "energy/diff": -1.25}, 7: {"loss": 0.25, "energy/diff": 3.0}}
    with summaries.SummaryWriter(logdir) as writer:
      writer.scalars(1, {"loss": 0.5, "energy/diff": tf.constant(-1.25)})
      writer.scalars(tf.constant(7, tf.int64), {"loss": np.float32(0.25),
                                                "energy/diff": tf.constant([3.0])})
      writer.scalars(8, {"diverged": float("nan")})
    read = {}
    for step, tag, plugin, value in _read_events(logdir):
      self.assertEqual(plugin, "scalars")
      read.setdefault(step, {})[tag] = float(tf.make_ndarray(value.tensor))
    self.assertTrue(np.isnan(read.pop(8)["diverged"]))
    self.assertEqual(read, written)

  def test_images_histogram_and_hparams_read_back(self):
    logdir = os.path.join(self.get_temp_dir(), "all")
    images = _constant_images([-1.0, 1.0, 0.0, 0.5], size=3, channels=3)
    values = np.array([0.0, 1.0, 1.0, 2.0, 9.0])
    writer = summaries.SummaryWriter(logdir)
    writer.images(5, "samples/persistent", images)
    writer.histogram(5, "bank/age", values)
    writer.hparams({"lr": 1e-4, "dataset": "cifar10", "steps": 3, "tau": None})
    with self.assertLogs(level="WARNING"):
      writer.hparams({"lr": 2.0})  # Recorded once only.
    writer.close()
    events = {tag: (step, plugin, value) for step, tag, plugin, value in _read_events(logdir)}

    step, plugin, value = events["samples/persistent"]
    self.assertEqual((step, plugin), (5, "images"))
    width, height, png = tf.make_ndarray(value.tensor)
    grid = tf.io.decode_png(png).numpy()
    self.assertEqual((int(width), int(height)), (grid.shape[1], grid.shape[0]))
    self.assertAllEqual(grid, summaries.upscale_for_display(summaries.image_grid(images)))
    self.assertGreaterEqual(grid.shape[1], summaries.DISPLAY_MIN_WIDTH)
    grid = grid[::grid.shape[1] // 9, ::grid.shape[1] // 9]  # one pixel per image pixel again
    self.assertAllEqual(grid, summaries.image_grid(images))
    self.assertAllEqual(grid[1, 1], [0, 0, 0])          # first image, -1
    self.assertAllEqual(grid[1, 5], [255, 255, 255])    # second image, 1

    step, plugin, value = events["bank/age"]
    self.assertEqual((step, plugin), (5, "histograms"))
    buckets = tf.make_ndarray(value.tensor)  # [k, 3]: left edge, right edge, count.
    self.assertAllClose(buckets[:, 2].sum(), len(values))
    self.assertAllClose([buckets[0, 0], buckets[-1, 1]], [0.0, 9.0])

    from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=g-import-not-at-top
    hparam_events = [v for _, (_, plugin, v) in events.items() if plugin == "hparams"]
    self.assertLen(hparam_events, 1)
    data = plugin_data_pb2.HParamsPluginData.FromString(
        hparam_events[0].metadata.plugin_data.content)
    recorded = data.session_start_info.hparams
    self.assertAlmostEqual(recorded["lr"].number_value, 1e-4)
    self.assertEqual(recorded["dataset"].string_value, "cifar10")
    self.assertEqual(recorded["steps"].number_value, 3)
    self.assertEqual(recorded["tau"].string_value, "None")

  def test_disabled_writer_writes_nothing(self):
    logdir = os.path.join(self.get_temp_dir(), "disabled")
    writer = summaries.SummaryWriter(logdir, enabled=False)
    writer.scalars(1, {"loss": 1.0})
    writer.images(1, "x", _constant_images([0.0]))
    writer.histogram(1, "h", [1.0, 2.0])
    writer.hparams({"lr": 0.1})
    writer.flush()
    writer.close()
    self.assertFalse(os.path.exists(logdir))
    # It still checks its inputs, so a bug shows on every worker alike.
    with self.assertRaisesRegex(ValueError, "images must be finite"):
      writer.images(1, "x", _constant_images([np.nan]))

  def test_bad_inputs(self):
    writer = summaries.SummaryWriter(os.path.join(self.get_temp_dir(), "bad"))
    with self.assertRaisesRegex(ValueError,
                                r"scalar 'loss' must be one real number; got shape \[2\]"):
      writer.scalars(1, {"loss": [1.0, 2.0]})
    with self.assertRaisesRegex(ValueError, "step must be an int >= 0; got -1"):
      writer.scalars(-1, {"loss": 1.0})
    with self.assertRaisesRegex(ValueError, "summary names must be non-empty strings"):
      writer.scalars(1, {"": 1.0})
    with self.assertRaisesRegex(ValueError, "histogram 'h' must be finite; got 1 NaN/inf"):
      writer.histogram(1, "h", [1.0, np.inf])
    writer.close()

  def test_missing_tensorboard_is_a_clear_error(self):
    with mock.patch.dict(sys.modules, {"tensorboard": None}):
      with self.assertRaisesRegex(ImportError, "pip install tensorboard"):
        summaries.SummaryWriter(os.path.join(self.get_temp_dir(), "no_tb"))
      summaries.SummaryWriter(os.path.join(self.get_temp_dir(), "no_tb"), enabled=False)


class _Clock:
  """A settable clock for Progress."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class ProgressTest(tf.test.TestCase):

  def test_eta_when_called_every_step(self):
    clock = _Clock()
    progress = summaries.Progress(3000, every_n_steps=100, clock=clock)
    clock.now = 10.0  # The first step traces and compiles: excluded from the speed.
    self.assertIsNone(progress.update(1))
    lines = []
    for step in range(2, 101):
      clock.now += 0.25
      lines.append(progress.update(step, energy_diff=-0.012, drift=tf.constant(0.0031)))
    self.assertEqual(lines[:-1], [None] * 98)
    # 99 steps in 24.75 s = 4 steps/s; ETA = (3000 - 100) / 4 = 725 s = 12 min 5 s.
    self.assertEqual(lines[-1], "step 100/3000 (3.3%) | 4.0 steps/s | ETA 12m05s | "
                                "energy_diff -0.012 drift 0.0031")
    self.assertAllClose(progress.steps_per_sec, 4.0)
    for step in range(101, 201):
      clock.now += 0.5
      line = progress.update(step)
    # The speed is measured over the last interval only: 100 steps in 50 s; ETA 2800 / 2 = 1400 s.
    self.assertEqual(line, "step 200/3000 (6.7%) | 2.0 steps/s | ETA 23m20s")
    self.assertAllClose(progress.steps_per_sec, 2.0)

  def test_every_seconds(self):
    clock = _Clock()
    progress = summaries.Progress(100, every_n_steps=None, every_seconds=60.0, clock=clock)
    emitted = {}
    for step in range(1, 30):
      clock.now += 7.0
      line = progress.update(step)
      if line:
        emitted[step] = line
    # Clock starts after step 1 (t = 7); lines when >= 60 s passed: t = 70 (step 10), 133 (19),
    # 196 (28). 9 steps in 63 s = 1/7 steps/s; ETA at step 10 = 90 * 7 = 630 s.
    self.assertEqual(sorted(emitted), [10, 19, 28])
    self.assertEqual(emitted[10], "step 10/100 (10.0%) | 0.143 steps/s | ETA 10m30s")
    self.assertAllClose(progress.steps_per_sec, 1 / 7)

  def test_first_update_after_many_steps_includes_startup(self):
    clock = _Clock()
    progress = summaries.Progress(1000, start_step=500, every_n_steps=100, clock=clock)
    self.assertIsNone(progress.steps_per_sec)
    clock.now = 40.0
    with self.assertLogs(level="INFO") as logs:
      line = progress.update(600, loss=2.0)
    self.assertEqual(line, "step 600/1000 (60.0%) | 2.5 steps/s (incl. startup) | ETA 2m40s | "
                           "loss 2")
    self.assertIn(line, "\n".join(logs.output))
    clock.now = 60.0
    self.assertEqual(progress.update(700), "step 700/1000 (70.0%) | 5.0 steps/s | ETA 1m00s")
    clock.now = 61.0
    self.assertIsNone(progress.update(750))
    clock.now = 110.0
    self.assertEqual(progress.update(1000), "step 1000/1000 (100.0%) | 6.0 steps/s | done")

  def test_log_false_returns_lines_without_logging_them(self):
    clock = _Clock()
    quiet = summaries.Progress(10, every_n_steps=5, clock=clock, log=False)
    loud = summaries.Progress(10, every_n_steps=5, clock=clock)
    with self.assertLogs(level="INFO") as logs:
      for step in range(1, 11):
        clock.now += 1.0
        quiet_line, loud_line = quiet.update(step), loud.update(step)
        self.assertEqual(quiet_line, loud_line)
    self.assertEqual(quiet.steps_per_sec, loud.steps_per_sec)
    # Only the logging Progress wrote its two lines (steps 5 and 10).
    self.assertLen([line for line in logs.output if "step 5/10" in line], 1)
    self.assertLen([line for line in logs.output if "step 10/10" in line], 1)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "total_steps must be an int >= 1; got 0"):
      summaries.Progress(0)
    with self.assertRaisesRegex(ValueError, r"start_step must be an int in \[0, total_steps=10\]"):
      summaries.Progress(10, start_step=11)
    with self.assertRaisesRegex(ValueError, "every_n_steps must be an int >= 1 or None"):
      summaries.Progress(10, every_n_steps=0)
    progress = summaries.Progress(10, clock=_Clock())
    progress.update(5)
    with self.assertRaisesRegex(ValueError, r"step must be in \[5, 10\].*got 4"):
      progress.update(4)
    with self.assertRaisesRegex(ValueError, r"step must be in \[5, 10\].*got 11"):
      progress.update(11)
    with self.assertRaisesRegex(ValueError, "metric 'x' must be one real number"):
      progress.update(6, x=[1.0, 2.0])

  def test_format_duration(self):
    for seconds, text in [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m05s"),
                          (90000, "25h00m00s")]:
      self.assertEqual(summaries.format_duration(seconds), text)


if __name__ == "__main__":
  tf.test.main()
