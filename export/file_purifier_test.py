"""Tests of purifying image files through the stand-in, and of the `purify` command line."""

import io
import json
import os
from contextlib import redirect_stdout

import numpy as np
import tensorflow as tf
from absl import flags

from export import client as client_lib
from export import file_purifier
from export import purify_main
from export import standin_server
from export import testing_utils


class FilePurifierTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.module, result = testing_utils.shared_tiny_export(with_classifier=True)
    cls.server = standin_server.StandinModelServer(result.model_dir, "purifier").start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    super().tearDownClass()

  def _write_pngs(self, count, size=8):
    directory = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    paths, pixels = [], []
    for i in range(count):
      image = rng.integers(0, 256, (size, size, 1)).astype(np.uint8)
      path = os.path.join(directory, f"img{i}.png")
      with open(path, "wb") as f:
        f.write(tf.io.encode_png(image).numpy())
      paths.append(path)
      pixels.append(image)
    return paths, np.stack(pixels)

  def test_purifies_files_in_batches(self):
    paths, pixels = self._write_pngs(3)
    output_dir = self.create_tempdir().full_path
    with client_lib.connect(self.server.rest_url) as client:
      results = file_purifier.purify_files(client, paths, output_dir, seed=[5, 10],
                                           num_steps=2, num_repeats=2, batch_size=2)
    images = pixels.astype(np.float32) / 127.5 - 1.0
    expected = [self.module.serve(images[:2], tf.constant([5, 10], tf.int64), tf.constant(2),
                                  tf.constant(2)),
                self.module.serve(images[2:], tf.constant([5, 11], tf.int64), tf.constant(2),
                                  tf.constant(2))]
    purified = np.concatenate([e["purified"].numpy() for e in expected])
    class_ids = np.concatenate([e["class_ids"].numpy() for e in expected])
    self.assertLen(results, 3)
    for i, record in enumerate(results):
      self.assertEqual(record["output"], os.path.join(output_dir, f"img{i}.purified.png"))
      written = tf.io.decode_png(tf.io.read_file(record["output"])).numpy()
      reference = np.round((np.clip(purified[i], -1, 1) + 1) * 127.5).astype(np.uint8)
      self.assertLessEqual(np.abs(written.astype(int) - reference.astype(int)).max(), 1)
      self.assertEqual(record["class_id"], class_ids[i])
    with open(os.path.join(output_dir, "results.json")) as f:
      self.assertEqual(json.load(f), results)

  def test_wrong_size_needs_resize(self):
    paths, _ = self._write_pngs(1, size=12)
    output_dir = self.create_tempdir().full_path
    with client_lib.connect("grpc://" + self.server.grpc_target) as client:
      with self.assertRaisesRegex(ValueError, "is 12x12 but the model takes 8x8"):
        file_purifier.purify_files(client, paths, output_dir)
      (record,) = file_purifier.purify_files(client, paths, output_dir, resize=True,
                                             num_steps=1)
    self.assertEqual(tf.io.decode_png(tf.io.read_file(record["output"])).shape, (8, 8, 1))

  def test_server_errors_surface(self):
    paths, _ = self._write_pngs(1)
    with client_lib.connect("grpc://" + self.server.grpc_target) as client:
      with self.assertRaisesRegex(client_lib.ServingError, r"num_steps must be in \[0, 20\]"):
        file_purifier.purify_files(client, paths, self.create_tempdir().full_path,
                                   num_steps=1000)

  def test_command_line(self):
    paths, _ = self._write_pngs(2)
    output_dir = self.create_tempdir().full_path
    flag_values = flags.FlagValues()
    purify_main.define_flags(flag_values)
    argv = flag_values(["purify", "--server=grpc://" + self.server.grpc_target,
                        f"--output_dir={output_dir}", "--num_steps=1", "--seed=1,2"] + paths)
    out = io.StringIO()
    with redirect_stdout(out):
      purify_main.main(argv, flag_values)
    lines = out.getvalue().strip().splitlines()
    self.assertLen(lines, 2)
    self.assertRegex(lines[0], r"img0.png -> .*img0.purified.png energy \S+ class \d")
    self.assertTrue(os.path.exists(os.path.join(output_dir, "img1.purified.png")))


if __name__ == "__main__":
  tf.test.main()
