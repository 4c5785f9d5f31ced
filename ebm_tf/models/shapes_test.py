"""Tests for ebm_tf.models.shapes."""
import tensorflow as tf

from ebm_tf.models import shapes


class AsShapeTest(tf.test.TestCase):

  def test_accepts_sequences_of_ints(self):
    self.assertEqual(shapes.as_shape("m", [32, 32, 3]), (32, 32, 3))
    self.assertEqual(shapes.as_shape("m", (2,), rank=1), (2,))

  def test_rejects_bad_shapes_naming_model_and_value(self):
    for bad in [(32, 32), (32, 32, 0), (32, -1, 3), (32.5, 32, 3), "abc", None, (True, 2, 2)]:
      with self.assertRaisesRegex(ValueError, r"^mymodel needs image_shape .*got"):
        shapes.as_shape("mymodel", bad)


class CheckImageShapeTest(tf.test.TestCase):

  def test_size(self):
    self.assertEqual(shapes.check_image_shape("m", (32, 32, 1), size=32), (32, 32, 1))
    with self.assertRaisesRegex(ValueError,
                                r"m needs image_shape \(32, 32, C\); got \(28, 28, 1\)"):
      shapes.check_image_shape("m", (28, 28, 1), size=32)
    with self.assertRaisesRegex(ValueError, "got"):
      shapes.check_image_shape("m", (32, 16, 1), size=32)

  def test_multiple_of(self):
    self.assertEqual(shapes.check_image_shape("m", (28, 8, 1), multiple_of=4), (28, 8, 1))
    with self.assertRaisesRegex(ValueError, r"divisible by 4; got image_shape \(30, 28, 1\)"):
      shapes.check_image_shape("m", (30, 28, 1), multiple_of=4)

  def test_channels(self):
    with self.assertRaisesRegex(ValueError, r"needs 3 channels"):
      shapes.check_image_shape("m", (32, 32, 1), channels=3)


if __name__ == "__main__":
  tf.test.main()
