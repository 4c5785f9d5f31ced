"""Tests for ebm_tf.internal.file_io: atomic writes and fsync helpers."""

import json
import os
from unittest import mock

from absl.testing import absltest
import numpy as np

from ebm_tf.internal import file_io


class AtomicFileTest(absltest.TestCase):

  def test_writers_create_parents_and_leave_no_temp_files(self):
    directory = self.create_tempdir().full_path
    text = file_io.write_text_atomic(os.path.join(directory, "a", "t.txt"), "hello\n")
    blob = file_io.write_json_atomic(os.path.join(directory, "a", "j.json"), {"b": 1, "a": [2]})
    arrays = file_io.save_npz_atomic(os.path.join(directory, "a", "x.npz"), x=np.arange(3))
    with open(text) as f:
      self.assertEqual(f.read(), "hello\n")
    with open(blob) as f:
      self.assertEqual(json.load(f), {"a": [2], "b": 1})
    with np.load(arrays) as f:
      np.testing.assert_array_equal(f["x"], [0, 1, 2])
    self.assertEqual(sorted(os.listdir(os.path.join(directory, "a"))),
                     ["j.json", "t.txt", "x.npz"])

  def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(self):
    path = os.path.join(self.create_tempdir().full_path, "keep.txt")
    file_io.write_text_atomic(path, "old")
    with self.assertRaisesRegex(RuntimeError, "boom"):
      with file_io.atomic_file(path) as f:
        f.write("new, half written")
        raise RuntimeError("boom")
    with open(path) as f:
      self.assertEqual(f.read(), "old")
    self.assertEqual(os.listdir(os.path.dirname(path)), ["keep.txt"])

  def test_a_failed_fsync_fails_the_write(self):
    path = os.path.join(self.create_tempdir().full_path, "x.txt")
    with mock.patch.object(os, "fsync", side_effect=OSError("disk gone")):
      with self.assertRaisesRegex(OSError, "disk gone"):
        file_io.write_text_atomic(path, "x")
    self.assertFalse(os.listdir(os.path.dirname(path)))

  def test_figure(self):
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = file_io.save_figure_atomic(fig, os.path.join(self.create_tempdir().full_path, "p.png"))
    plt.close(fig)
    with open(path, "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

  def test_bad_mode_and_remote_detection(self):
    with self.assertRaisesRegex(ValueError, "mode must be 'w' or 'wb'; got 'a'"):
      with file_io.atomic_file("/tmp/x", "a"):
        pass
    self.assertTrue(file_io.is_local("/a/b"))
    self.assertFalse(file_io.is_local("gs://bucket/b"))

  def test_fsync_tree_touches_every_file_and_directory(self):
    root = self.create_tempdir().full_path
    file_io.write_text_atomic(os.path.join(root, "a", "b", "c.txt"), "x")
    file_io.write_text_atomic(os.path.join(root, "d.txt"), "y")
    opened = []
    real_open = os.open

    def recording_open(path, flags, *args):
      opened.append(os.path.relpath(path, root))
      return real_open(path, flags, *args)

    with mock.patch.object(os, "open", recording_open):
      file_io.fsync_tree(root)
    self.assertContainsSubset({"a/b/c.txt", "d.txt", ".", "a", "a/b"}, set(opened))


if __name__ == "__main__":
  absltest.main()
