"""Tests for ebm_tf.classifier.classifier_lib: the L2 term, the schedule, the SGD update, training on digits,
the output layout, resuming and load_classifier."""

import glob
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf.data import datasets
from ebm_tf.training import checkpoints


def _config(model_dir, **overrides):
  values = dict(dataset="digits", random_crop=False, classifier="small_cnn", batch_size=64,
                train_steps=200, lr_values=(0.05, 0.005), lr_boundaries=(150,), eval_every=100,
                log_every=50, model_dir=model_dir)
  values.update(overrides)
  return classifier_config.ClassifierConfig(**values)


def _weights(model):
  return [v.numpy().copy() for v in model.weights]


class L2PenaltyTest(tf.test.TestCase):

  def test_equals_half_sum_of_squares_times_weight_decay(self):
    model = classifier_lib.build_model(_config("unused"))
    squares = sum(float(np.sum(np.square(v.numpy().astype(np.float64))))
                  for v in model.trainable_variables)
    self.assertGreater(squares, 0.0)
    penalty = classifier_lib.l2_penalty(model.trainable_variables, 5e-4)
    self.assertAllClose(float(penalty), 5e-4 * squares / 2.0, rtol=1e-5)

  def test_gradient_is_weight_decay_times_weights(self):
    variables = [tf.Variable([[1.0, -2.0]]), tf.Variable([3.0])]
    with tf.GradientTape() as tape:
      penalty = classifier_lib.l2_penalty(variables, 0.1)
    grads = tape.gradient(penalty, variables)
    self.assertAllClose(float(penalty), 0.1 * (1 + 4 + 9) / 2)
    self.assertAllClose(grads[0], [[0.1, -0.2]])
    self.assertAllClose(grads[1], [0.3])

  def test_zero_and_negative_weight_decay(self):
    self.assertEqual(float(classifier_lib.l2_penalty([tf.Variable([5.0])], 0.0)), 0.0)
    with self.assertRaisesRegex(ValueError, "weight_decay must be >= 0; got -1"):
      classifier_lib.l2_penalty([tf.Variable([5.0])], -1)


class ScheduleTest(tf.test.TestCase):

  def test_reference_boundaries_are_in_steps(self):
    schedule = classifier_lib.make_lr_schedule((0.1, 0.01, 0.001), (40 * 499, 60 * 499))
    # Step t (updates already applied) uses values[i] for boundaries[i-1] < t <= boundaries[i].
    expected = {0: 0.1, 19959: 0.1, 19960: 0.1, 19961: 0.01, 29940: 0.01, 29941: 0.001,
                49899: 0.001}
    for step, rate in expected.items():
      self.assertAllClose(float(schedule(step)), rate, msg=f"step {step}")

  def test_single_value_is_constant(self):
    self.assertEqual(classifier_lib.make_lr_schedule((0.3,), ()), 0.3)

  def test_mismatched_lengths(self):
    with self.assertRaisesRegex(ValueError, "one more entry than boundaries"):
      classifier_lib.make_lr_schedule((0.1, 0.01), (1, 2))


class SgdUpdateTest(tf.test.TestCase):

  def test_three_steps_match_an_independent_sgd_momentum_with_l2(self):
    # lr 0.1 for steps 0 and 1, 0.02 from step 2; momentum 0.9; L2 1e-2.
    config = _config(self.create_tempdir().full_path, lr_values=(0.1, 0.02),
                     lr_boundaries=(1,), momentum=0.9, weight_decay=1e-2, batch_size=16)
    trainer = classifier_lib.ClassifierTrainer(config)
    images, labels = datasets.load_array("digits", "train", max_examples=16)
    batch = {"image": tf.constant(images), "label": tf.constant(labels)}
    batches = iter(tf.data.Dataset.from_tensors(batch).repeat())
    weights = [tf.Variable(w) for w in _weights(trainer.model)]
    oracle = keras.models.clone_model(trainer.model)
    velocity = [np.zeros_like(w.numpy()) for w in weights]
    for t, rate in enumerate([0.1, 0.1, 0.02]):
      oracle.set_weights([w.numpy() for w in weights])
      with tf.GradientTape() as tape:
        logits = oracle(batch["image"], training=True)
        cross_entropy = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            batch["label"], logits, from_logits=True))
        squares = tf.add_n([tf.reduce_sum(tf.square(v)) for v in oracle.trainable_variables])
        loss = cross_entropy + 1e-2 * squares / 2
      grads = tape.gradient(loss, oracle.trainable_variables)
      for i, g in enumerate(grads):
        velocity[i] = 0.9 * velocity[i] - rate * g.numpy()
        weights[i].assign_add(velocity[i])
      trainer.run_steps(batches, 1)
      self.assertEqual(int(trainer.step.numpy()), t + 1)
      for got, want in zip(trainer.model.trainable_variables, weights):
        self.assertAllClose(got, want, atol=1e-5, rtol=1e-4, msg=f"after step {t + 1}")

  def test_returned_sums(self):
    config = _config(self.create_tempdir().full_path, batch_size=8, weight_decay=0.0)
    trainer = classifier_lib.ClassifierTrainer(config)
    images, labels = datasets.load_array("digits", "train", max_examples=8)
    logits = trainer.model(images, training=True).numpy()
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    want_loss = -log_probs[np.arange(8), labels].sum()
    want_correct = np.sum(logits.argmax(axis=1) == labels)
    batches = tf.data.Dataset.from_tensors({"image": images, "label": labels})
    loss, correct, count, penalty = trainer.run_steps(iter(batches), 1)
    self.assertAllClose(float(loss), want_loss, rtol=1e-5)
    self.assertEqual(float(correct), want_correct)
    self.assertEqual(float(count), 8.0)
    self.assertEqual(float(penalty), 0.0)


class EvaluateTest(tf.test.TestCase):

  def _model(self):
    # logits = flattened 1x1x3 image: the prediction is the argmax pixel.
    inputs = keras.Input([1, 1, 3])
    return keras.Model(inputs, keras.layers.Flatten()(inputs))

  def test_accuracy_against_hand_labels(self):
    images = np.zeros([5, 1, 1, 3], np.float32)
    for i, k in enumerate([0, 1, 2, 1, 0]):
      images[i, 0, 0, k] = 1.0
    labels = np.array([0, 1, 0, 1, 2])  # 3 of 5 right.
    for batch_size in (1, 2, 500):
      self.assertAllClose(classifier_lib.evaluate(self._model(), images, labels, batch_size),
                          0.6)

  def test_bad_inputs(self):
    model = self._model()
    good = np.zeros([2, 1, 1, 3], np.float32)
    with self.assertRaisesRegex(ValueError, r"images must have shape \[batch, 1, 1, 3\].*"
                                r"got \[2, 8, 8, 1\]"):
      classifier_lib.evaluate(model, np.zeros([2, 8, 8, 1], np.float32), [0, 1])
    with self.assertRaisesRegex(ValueError, r"in \[-1, 1\]; got finite range \[0.0, 2.0\]"):
      classifier_lib.evaluate(model, good + np.array([0, 2, 0], np.float32), [0, 1])
    with self.assertRaisesRegex(ValueError, "NaN"):
      classifier_lib.evaluate(model, good * np.nan, [0, 1])
    with self.assertRaisesRegex(ValueError, r"labels must be in \[0, 3\); got range \[0, 3\]"):
      classifier_lib.evaluate(model, good, [0, 3])
    with self.assertRaisesRegex(ValueError, r"labels must be integers of shape \[2\]"):
      classifier_lib.evaluate(model, good, [0, 1, 2])
    with self.assertRaisesRegex(ValueError, "batch_size must be a positive int; got 0"):
      classifier_lib.evaluate(model, good, [0, 1], batch_size=0)


class TrainDigitsTest(tf.test.TestCase):
  """One 200-step digits run (about 15 s on 2 cores) shared by the tests of this class."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = tempfile.mkdtemp()
    cls.trainer = classifier_lib.ClassifierTrainer(_config(cls.model_dir))
    cls.result = cls.trainer.train()
    cls.test_images, cls.test_labels = datasets.load_array("digits", "test")

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.model_dir, ignore_errors=True)
    super().tearDownClass()

  def test_reaches_90_percent_and_keeps_the_best(self):
    result = self.result
    self.assertEqual(result["step"], 200)
    self.assertGreaterEqual(result["best_accuracy"], 0.9)
    self.assertGreaterEqual(result["test_accuracy"], 0.9)
    self.assertIn(result["best_step"], (100, 200))
    self.assertGreater(result["train_accuracy"], 0.9)
    best = classifier_lib.read_best(self.model_dir)
    self.assertEqual(best["step"], result["best_step"])
    self.assertEqual(best["split"], "test")
    self.assertEqual(best["num_examples"], 297)
    self.assertAllClose(best["accuracy"], result["best_accuracy"])
    if best["step"] == 200:  # The final weights are the best ones.
      self.assertAllClose(best["accuracy"], result["test_accuracy"])

  def test_output_layout(self):
    with open(os.path.join(self.model_dir, "classifier_config.json")) as f:
      saved = json.load(f)
    self.assertEqual(saved["classifier"], "small_cnn")
    self.assertEqual(saved["dataset"], "digits")
    self.assertIsNone(saved["image_size"])
    self.assertEqual(saved["num_classes"], 10)
    self.assertEqual(saved["image_shape"], [8, 8, 1])
    self.assertTrue(os.path.exists(os.path.join(self.model_dir, "checkpoints",
                                                "ckpt-100.index")))
    self.assertTrue(os.path.exists(os.path.join(self.model_dir, "checkpoints",
                                                "ckpt-200.index")))
    best_step = self.result["best_step"]
    self.assertEqual([os.path.basename(p) for p in
                      glob.glob(os.path.join(self.model_dir, "best", "ckpt-*.index"))],
                     [f"ckpt-{best_step}.index"])
    self.assertNotEmpty(glob.glob(os.path.join(self.model_dir, "tensorboard", "events.*")))
    # The training checkpoint holds the documented keys.
    prefix = os.path.join(self.model_dir, "checkpoints", "ckpt-200")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_variable(prefix, "_CHECKPOINTABLE_OBJECT_GRAPH"))
    keys = {child.local_name for child in graph.nodes[0].children}
    self.assertContainsSubset({"classifier", "optimizer", "step", "best_accuracy",
                               "best_step"}, keys)
    self.assertEqual(tf.train.load_variable(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE"), 200)
    self.assertAllClose(tf.train.load_variable(prefix, "best_accuracy/.ATTRIBUTES/VARIABLE_VALUE"),
                        self.result["best_accuracy"])
    best_prefix = os.path.join(self.model_dir, "best", f"ckpt-{best_step}")
    graph.ParseFromString(tf.train.load_variable(best_prefix, "_CHECKPOINTABLE_OBJECT_GRAPH"))
    self.assertEqual({child.local_name for child in graph.nodes[0].children} - {"save_counter"},
                     {"classifier"})

  def test_load_best_matches_recorded_accuracy(self):
    model, config = classifier_lib.load_classifier(self.model_dir, which="best")
    self.assertEqual(config, self.trainer.config)
    accuracy = classifier_lib.evaluate(model, self.test_images, self.test_labels)
    self.assertAllClose(accuracy, classifier_lib.read_best(self.model_dir)["accuracy"])
    self.assertEqual(tuple(model.outputs[0].shape), (None, 10))

  def test_load_latest_has_the_final_weights(self):
    model, _ = classifier_lib.load_classifier(self.model_dir, which="latest")
    for got, want in zip(model.weights, self.trainer.model.weights):
      self.assertAllEqual(got, want)
    accuracy = classifier_lib.evaluate(model, self.test_images, self.test_labels)
    self.assertAllClose(accuracy, self.result["test_accuracy"])

  def test_resume_continues_from_the_checkpoint_step_as_if_uninterrupted(self):
    model_dir = self.create_tempdir().full_path
    first = classifier_lib.ClassifierTrainer(_config(model_dir, train_steps=100))
    self.assertEqual(first.train()["step"], 100)
    second = classifier_lib.ClassifierTrainer(_config(model_dir))
    self.assertEqual(second.restore_or_initialize(), 100)
    for got, want in zip(second.model.weights, first.model.weights):
      self.assertAllEqual(got, want)
    self.assertEqual(int(second.optimizer.iterations.numpy()), 100)
    self.assertEqual(int(second.best_step.numpy()), 100)
    result = second.train()
    self.assertEqual(result["step"], 200)
    self.assertEqual(int(second.optimizer.iterations.numpy()), 200)
    self.assertTrue(os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-200.index")))
    # The model, the optimizer and the data position were restored: the resumed run ends where
    # the uninterrupted 200-step run of setUpClass ended.
    for got, want in zip(second.model.weights, self.trainer.model.weights):
      self.assertAllClose(got, want, rtol=1e-5, atol=1e-6)
    self.assertEqual(classifier_lib.read_best(model_dir)["step"], self.result["best_step"])
    # Already done: a further call trains nothing.
    again = classifier_lib.ClassifierTrainer(_config(model_dir)).train()
    self.assertEqual(again["step"], 200)
    self.assertTrue(np.isnan(again["test_accuracy"]))

  def test_load_errors(self):
    with self.assertRaisesRegex(ValueError, r"which must be one of \('best', 'latest'\); "
                                "got 'newest'"):
      classifier_lib.load_classifier(self.model_dir, which="newest")
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(FileNotFoundError, "classifier_config.json"):
      classifier_lib.load_classifier(empty)
    classifier_config.save_config(_config(empty), empty)
    with self.assertRaisesRegex(FileNotFoundError, "no best checkpoint"):
      classifier_lib.load_classifier(empty)
    with self.assertRaisesRegex(FileNotFoundError, "has not evaluated yet"):
      classifier_lib.read_best(empty)

  def test_damaged_best_checkpoint_is_reported(self):
    model_dir = os.path.join(self.create_tempdir().full_path, "run")
    shutil.copytree(self.model_dir, model_dir)
    for path in glob.glob(os.path.join(model_dir, "best", "ckpt-*.data-*")):
      with open(path, "r+b") as f:
        f.truncate(10)
    with self.assertRaises(checkpoints.UnreadableCheckpointError):
      classifier_lib.load_classifier(model_dir, which="best")


class PrecisionTest(tf.test.TestCase):

  def test_mixed_bfloat16_trains_with_float32_logits_and_variables(self):
    config = _config(self.create_tempdir().full_path, precision="mixed_bfloat16",
                     train_steps=2, eval_every=2, log_every=1, batch_size=8)
    trainer = classifier_lib.ClassifierTrainer(config)
    self.assertEqual(trainer.model.layers[1].compute_dtype, "bfloat16")
    self.assertTrue(all(v.dtype == tf.float32 for v in trainer.model.trainable_variables))
    result = trainer.train()
    self.assertTrue(np.isfinite(result["loss"]))
    model, _ = classifier_lib.load_classifier(config.model_dir, "latest")
    self.assertEqual(model.layers[1].compute_dtype, "float32")


if __name__ == "__main__":
  tf.test.main()
