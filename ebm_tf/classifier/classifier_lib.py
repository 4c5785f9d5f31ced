"""Training the naturally trained classifier that the EBM purification defense protects.

The recipe is the reference's `train_clf.py` (docs/paper_settings.md section 7.1): cross-entropy on
clean, augmented data plus the L2 term `weight_decay * sum(tf.nn.l2_loss(v))` over every trainable
variable (batch-norm scales and offsets and biases included), SGD with momentum on a
piecewise-constant learning rate, accuracy on the test split every `eval_every` steps, and the best
weights kept. Under a tf.distribute strategy each replica divides its loss by the number of
replicas, so the all-reduced (summed) gradient is that of the global-batch mean.

Output layout of a run in `config.model_dir` (the exporter and the attack code rely on it):

  classifier_config.json   every `ClassifierConfig` field ("classifier", "dataset", "image_size"
                           - null for the dataset's own size -, "wrn_depth", ...) plus
                           "num_classes" and "image_shape" [H, W, C].
  checkpoints/             `ebm_tf.training.checkpoints.Checkpointer` of the full training state, keys
                           `classifier` (the Keras model), `optimizer` (SGD with its momentum
                           slots and iteration count), `step` (int64), `best_accuracy` (float32,
                           -1 before the first evaluation), `best_step` (int64) and, under the
                           default strategy, `data_iterator`; one `ckpt-<step>` per evaluation
                           and at the end, the newest `max_to_keep` kept. Restore the model
                           through the object graph (`tf.train.Checkpoint(classifier=model)`,
                           as `load_classifier` does), not by variable names: the weights are
                           stored under the optimizer's path.
  best/                    a Checkpointer directory with the single key `classifier`: the
                           weights with the highest accuracy on `eval_split` so far
                           (`ckpt-<step>`, only the newest kept), and
  best/best.json           {"step", "accuracy", "split", "num_examples"} of those weights.
  tensorboard/             scalars train/loss (cross-entropy), train/l2_loss, train/accuracy
                           (on augmented training batches, training-mode batch norm), lr,
                           test/accuracy and test/best_accuracy (on `eval_split`),
                           steps_per_sec; hyperparameters.

`load_classifier(model_dir, which)` rebuilds the network from classifier_config.json and restores
`best/` or the newest training checkpoint.
"""

import json
import os
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_config
from ebm_tf.data import datasets
from ebm_tf.internal import file_io
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import distribute
from ebm_tf.training import loop
from ebm_tf.training import summaries

ClassifierConfig = classifier_config.ClassifierConfig

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
BEST_FILENAME = "best.json"
TENSORBOARD_DIR = "tensorboard"
WHICH = ("best", "latest")


def l2_penalty(variables: Sequence[tf.Variable], weight_decay: float) -> tf.Tensor:
  """The reference's weight decay term: weight_decay * sum_v tf.nn.l2_loss(v).

  Args:
    variables: the trainable variables (any shapes, float).
    weight_decay: coefficient >= 0 (5e-4 in the reference); 0 returns 0.

  Returns:
    Scalar float32, weight_decay * sum_v sum(v ** 2) / 2.
  """
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
  if weight_decay == 0 or not variables:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


def make_lr_schedule(values: Sequence[float], boundaries: Sequence[int]):
  """Piecewise-constant learning rate over optimizer steps (a float when there is one value).

  Step t (the number of updates already applied) uses values[0] while t <= boundaries[0],
  values[1] while t <= boundaries[1], ... (Keras `PiecewiseConstantDecay`, as the reference).
  """
  if len(values) != len(boundaries) + 1:
    raise ValueError(f"lr values need exactly one more entry than boundaries; got {list(values)}"
                     f" and {list(boundaries)}")
  if not boundaries:
    return float(values[0])
  return keras.optimizers.schedules.PiecewiseConstantDecay(
      [int(b) for b in boundaries], [float(v) for v in values])


def make_optimizer(config: ClassifierConfig) -> keras.optimizers.SGD:
  """SGD with `config.momentum` (Nesterov if `config.nesterov`) on the config's schedule."""
  return keras.optimizers.SGD(learning_rate=make_lr_schedule(config.lr_values,
                                                             config.lr_boundaries),
                              momentum=config.momentum, nesterov=config.nesterov)


def build_model(config: ClassifierConfig, dtype: Optional[str] = None) -> keras.Model:
  """Builds the config's classifier: images [B, H, W, C] float32 in [-1, 1] -> logits [B, K].

  Args:
    config: the run's config (classifier name, wrn_depth/wrn_widen_factor for 'wrn', dataset).
    dtype: Keras dtype policy of the layers (None: from config.precision); logits are float32.
  """
  if dtype is None:
    dtype = None if config.precision == "float32" else config.precision
  return models.build_classifier(config.classifier, config.image_shape, config.num_classes,
                                 dtype=dtype, **config.model_kwargs)


def _make_predict(model: keras.Model):
  spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)

  @tf.function(input_signature=[spec])
  def predict(images):
    return tf.argmax(model(images, training=False), axis=-1)
  return predict


def _check_eval_arrays(model: keras.Model, images, labels) -> Tuple[np.ndarray, np.ndarray]:
  images = np.asarray(images)
  labels = np.asarray(labels)
  expected = tuple(model.inputs[0].shape[1:])
  want = f"[batch, {', '.join(str(d) for d in expected)}]"
  if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] == 0:
    raise ValueError(f"images must have shape {want} (batch >= 1) in [-1, 1]; got "
                     f"{list(images.shape)}")
  if images.dtype.kind != "f":
    raise ValueError(f"images must be floats in [-1, 1]; got dtype {images.dtype}")
  finite = np.isfinite(images)
  if not np.all(finite) or images.min() < -1.0 or images.max() > 1.0:
    values = images[finite]
    value_range = f"[{values.min()}, {values.max()}]" if values.size else "none"
    raise ValueError(f"images must be finite and in [-1, 1]; got finite range {value_range} "
                     f"and {int(np.sum(~finite))} NaN/inf values")
  num_classes = int(model.outputs[0].shape[-1])
  if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
    raise ValueError(f"labels must be integers of shape [{images.shape[0]}] (one per image); "
                     f"got {labels.dtype} of shape {list(labels.shape)}")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels must be in [0, {num_classes}); got range [{labels.min()}, "
                     f"{labels.max()}]")
  return images.astype(np.float32), labels


def _accuracy(predict, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
  correct = 0
  for start in range(0, len(labels), batch_size):
    predictions = predict(tf.constant(images[start:start + batch_size])).numpy()
    correct += int(np.sum(predictions == labels[start:start + batch_size]))
  return correct / len(labels)


def evaluate(model: keras.Model, images, labels, batch_size: int = 500) -> float:
  """Top-1 accuracy of `model` (inference mode: batch norm uses its moving statistics).

  Args:
    model: a classifier mapping [B, H, W, C] float32 images to logits [B, K].
    images: float array [N, H, W, C] in [-1, 1], N >= 1.
    labels: int array [N] in [0, K).
    batch_size: positive int, examples per forward pass.

  Returns:
    A Python float in [0, 1]: the fraction of images whose argmax logit is the label.

  Raises:
    ValueError: shapes, dtypes or value ranges other than the above.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
      batch_size < 1):
    raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
  images, labels = _check_eval_arrays(model, images, labels)
  return _accuracy(_make_predict(model), images, labels, int(batch_size))


def read_best(model_dir: str) -> Dict:
  """The record of the best checkpoint, `<model_dir>/best/best.json`.

  Returns:
    {"step": int, "accuracy": float in [0, 1], "split": str, "num_examples": int}.

  Raises:
    FileNotFoundError: the run has not evaluated yet (or model_dir is not a classifier run).
  """
  path = os.path.join(model_dir, BEST_DIR, BEST_FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {BEST_DIR}/{BEST_FILENAME} in {model_dir!r}: the run has not "
                            "evaluated yet, or it is not an ebm_tf.train_classifier model_dir")
  with open(path) as f:
    return json.load(f)


def _next_multiple(step: int, every: int) -> int:
  return (step // every + 1) * every


class ClassifierTrainer:
  """Builds the classifier, its optimizer and checkpoints for one run, and trains it.

  Args:
    config: the run's `ClassifierConfig`.
    strategy: a tf.distribute strategy; default `distribute.make_strategy(config.strategy, ...)`.
  """

  def __init__(self, config: ClassifierConfig,
               strategy: Optional[tf.distribute.Strategy] = None):
    self.config = config
    self.strategy = loop.make_strategy(config, strategy)
    self.num_replicas = self.strategy.num_replicas_in_sync
    self.batch_per_replica = loop.batch_per_replica(config.batch_size, self.num_replicas)
    if not config.model_dir:
      raise ValueError("config.model_dir must be set: where checkpoints and events are written")
    logging.info("strategy %s: %d replica(s), batch %d per replica",
                 type(self.strategy).__name__, self.num_replicas, self.batch_per_replica)
    self.is_chief = distribute.is_chief(self.strategy)
    # Keras initialisers draw from the global seed: the initial weights are a function of seed.
    keras.utils.set_random_seed(config.seed)
    self.lr_schedule = make_lr_schedule(config.lr_values, config.lr_boundaries)
    # Non-chief workers write their part of a multi-worker save to a private place.
    save_dir = loop.worker_private_dir(config.model_dir, self.strategy) or config.model_dir
    checkpoint_dir = os.path.join(save_dir, CHECKPOINT_DIR)
    best_dir = os.path.join(save_dir, BEST_DIR)
    with self.strategy.scope():
      self.model = build_model(config)
      self.optimizer = make_optimizer(config)
      self.optimizer.build(self.model.trainable_variables)
      first = tf.VariableAggregation.ONLY_FIRST_REPLICA
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                              aggregation=first)
      self.best_accuracy = tf.Variable(-1.0, dtype=tf.float32, trainable=False,
                                       name="best_accuracy", aggregation=first)
      self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step",
                                   aggregation=first)
      trackables = dict(classifier=self.model, optimizer=self.optimizer, step=self.step,
                        best_accuracy=self.best_accuracy, best_step=self.best_step)
      # The data position: TF can checkpoint the iterator of a single-device pipeline, so a
      # resumed run sees the batches an uninterrupted one would; a distributed iterator cannot
      # be checkpointed, and a resumed run reseeds the shuffle instead (see make_iterator).
      self._iterator = loop.checkpointable_iterator(self.strategy, self.make_iterator)
      if self._iterator is not None:
        trackables["data_iterator"] = self._iterator
      self.checkpointer = checkpoints.Checkpointer(
          checkpoint_dir, max_to_keep=config.max_to_keep, **trackables)
      self.best_checkpointer = checkpoints.Checkpointer(best_dir, max_to_keep=1,
                                                        classifier=self.model)
    self._run_steps = tf.function(self._run_steps_body)
    self._predict = _make_predict(self.model)
    self._eval_data = None

  # -- data -----------------------------------------------------------------------------------
  def make_iterator(self, resume_step: int = 0):
    """An iterator over the (per-replica) training batches of the config's dataset.

    The shuffle and augmentation seed is `config.seed`, or, for a distributed iterator resumed
    at `resume_step` > 0, `config.seed + 7919 * resume_step` (`loop.data_seed`, a documented
    reseed, as in `train_lib`: TF cannot checkpoint a distributed iterator's position).
    """
    c = self.config

    def dataset_fn(input_context, seed):
      return datasets.make_train_dataset(
          c.dataset, batch_size_per_replica=self.batch_per_replica, data_dir=c.data_dir,
          image_size=c.image_size, random_crop=c.random_crop, seed=seed,
          input_context=input_context)
    return loop.make_iterator(self.strategy, dataset_fn, c.seed, resume_step)

  def eval_data(self) -> Tuple[np.ndarray, np.ndarray]:
    """The evaluation set (first `eval_examples` of `eval_split`, all if 0), loaded once."""
    if self._eval_data is None:
      c = self.config
      self._eval_data = datasets.load_array(c.dataset, c.eval_split,
                                        max_examples=c.eval_examples or None,
                                        data_dir=c.data_dir, image_size=c.image_size)
      if not len(self._eval_data[1]):
        raise ValueError(f"eval_split {c.eval_split!r} of dataset {c.dataset!r} has no examples")
    return self._eval_data

  # -- the training step ----------------------------------------------------------------------
  def _replica_step(self, batch):
    c = self.config
    images = tf.cast(batch["image"], tf.float32)
    labels = tf.cast(batch["label"], tf.int64)
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      logits = tf.cast(self.model(images, training=True), tf.float32)
      cross_entropy = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
      penalty = l2_penalty(variables, c.weight_decay)
      scaled = (cross_entropy + penalty) / self.num_replicas
    grads = tape.gradient(scaled, variables)
    self.optimizer.apply_gradients(zip(grads, variables))
    count = tf.cast(tf.shape(labels)[0], tf.float32)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
    return cross_entropy * count, correct, count, penalty

  def _run_steps_body(self, iterator, num_steps):
    loss_sum = tf.constant(0.0)
    correct_sum = tf.constant(0.0)
    count_sum = tf.constant(0.0)
    penalty = tf.constant(0.0)
    for _ in tf.range(num_steps):
      results = self.strategy.run(self._replica_step, args=(next(iterator),))
      loss, correct, count, replica_penalty = (
          self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results)
      loss_sum += loss
      correct_sum += correct
      count_sum += count
      penalty = replica_penalty / self.num_replicas
      self.step.assign_add(1)
    return loss_sum, correct_sum, count_sum, penalty

  def run_steps(self, iterator, num_steps: int) -> Tuple[tf.Tensor, ...]:
    """Runs `num_steps` distributed SGD steps on batches from `iterator`.

    Args:
      iterator: an iterator over global batches {'image': [B, H, W, C] float32 in [-1, 1],
        'label': int [B]} (distributed per replica under a multi-replica strategy).
      num_steps: int >= 1.

    Returns:
      Scalar float32 tensors: the sum over examples of the cross-entropy, the number of correct
      training predictions, the number of examples, and the last step's L2 penalty.
    """
    return self._run_steps(iterator, tf.constant(num_steps, tf.int32))

  # -- evaluation and checkpoints -------------------------------------------------------------
  def evaluate(self) -> float:
    """Accuracy of the current weights on the evaluation set, a float in [0, 1]."""
    images, labels = self.eval_data()
    return _accuracy(self._predict, images, labels, self.config.eval_batch_size)

  def restore_or_initialize(self) -> int:
    """Restores the newest readable training checkpoint (if any); returns the step."""
    step = loop.restore_or_initialize(self.checkpointer, self.step, self.config.model_dir)
    # best/ is saved before the training checkpoint: after a crash in between, best.json is
    # ahead of the restored best_accuracy and wins.
    try:
      record = read_best(self.config.model_dir)
    except FileNotFoundError:
      record = None
    if record is not None and np.float32(record["accuracy"]) > self.best_accuracy.numpy():
      self.best_accuracy.assign(record["accuracy"])
      self.best_step.assign(record["step"])
    return step

  def _evaluate_and_save(self, step: int, writer: summaries.SummaryWriter) -> float:
    c = self.config
    accuracy = self.evaluate()
    # Compared in float32, the variable's precision, so that a tie keeps the earlier weights.
    if np.float32(accuracy) > self.best_accuracy.numpy():
      self.best_accuracy.assign(accuracy)
      self.best_step.assign(step)
      self.best_checkpointer.save(step)
      if self.is_chief:
        file_io.write_json_atomic(
            os.path.join(c.model_dir, BEST_DIR, BEST_FILENAME),
            {"step": step, "accuracy": accuracy, "split": c.eval_split,
             "num_examples": int(len(self.eval_data()[1]))})
    self.checkpointer.save(step)
    best = float(self.best_accuracy.numpy())
    writer.scalars(step, {"test/accuracy": accuracy, "test/best_accuracy": best})
    logging.info("step %d: %s accuracy %.4f (best %.4f at step %d)", step, c.eval_split,
                 accuracy, best, int(self.best_step.numpy()))
    return accuracy

  def learning_rate(self, step: int) -> float:
    """The learning rate of the update made when `step` updates were already applied."""
    if callable(self.lr_schedule):
      return float(self.lr_schedule(step))
    return float(self.lr_schedule)

  # -- the loop -------------------------------------------------------------------------------
  def train(self) -> Dict[str, float]:
    """Trains to `config.train_steps`, resuming from the newest checkpoint in model_dir.

    Writes classifier_config.json, checkpoints, the best checkpoint, TensorBoard events and a
    progress line (see the module docstring).

    Returns:
      {"step", "test_accuracy" (the latest evaluation, or NaN if none ran in this call),
      "best_accuracy", "best_step", and, if any step ran, "loss", "l2_loss",
      "train_accuracy" of the last logging interval}.

    Raises:
      FloatingPointError: the loss became NaN or inf (the last good checkpoint is kept).
    """
    c = self.config
    start = self.restore_or_initialize()
    if self.is_chief:
      classifier_config.save_config(c, c.model_dir)
    result = {"test_accuracy": float("nan")}
    if start >= c.train_steps:
      logging.info("nothing to do: step %d >= train_steps %d", start, c.train_steps)
      return self._result(start, result)
    writer = summaries.SummaryWriter(os.path.join(c.model_dir, TENSORBOARD_DIR),
                                     enabled=self.is_chief)
    if start == 0:
      writer.hparams(classifier_config.config_dict(c))
    self.eval_data()  # Fail on a missing evaluation split before training.
    progress = summaries.Progress(c.train_steps, start_step=start, every_n_steps=c.log_every,
                                  log=self.is_chief)
    iterator = self._iterator or self.make_iterator(resume_step=start)
    step = start
    sums = np.zeros(3)
    while step < c.train_steps:
      stop = min(_next_multiple(step, c.log_every), _next_multiple(step, c.eval_every),
                 c.train_steps)
      loss, correct, count, penalty = self.run_steps(iterator, stop - step)
      sums += [float(loss), float(correct), float(count)]
      step = stop
      if step % c.log_every == 0 or step == c.train_steps:
        result.update(loss=float(sums[0] / sums[2]), train_accuracy=float(sums[1] / sums[2]),
                      l2_loss=float(penalty))
        sums[:] = 0
        if not np.isfinite(result["loss"]) or not np.isfinite(result["l2_loss"]):
          raise FloatingPointError(
              f"training diverged at step {step}: loss {result['loss']}, l2 loss "
              f"{result['l2_loss']}; the last good checkpoint is kept (lower the learning rate)")
        lr = self.learning_rate(step - 1)
        progress.update(step, loss=result["loss"], train_acc=result["train_accuracy"], lr=lr)
        scalars = {"train/loss": result["loss"], "train/l2_loss": result["l2_loss"],
                   "train/accuracy": result["train_accuracy"], "lr": lr}
        if progress.steps_per_sec:
          scalars["steps_per_sec"] = progress.steps_per_sec
        writer.scalars(step, scalars)
      if step % c.eval_every == 0 or step == c.train_steps:
        result["test_accuracy"] = self._evaluate_and_save(step, writer)
    writer.flush()
    writer.close()
    return self._result(step, result)

  def _result(self, step: int, result: Dict[str, float]) -> Dict[str, float]:
    return dict(result, step=step, best_accuracy=float(self.best_accuracy.numpy()),
                best_step=int(self.best_step.numpy()))


def train(config: ClassifierConfig) -> Dict[str, float]:
  """Trains (or resumes) the classifier run `config`; see `ClassifierTrainer.train`."""
  return ClassifierTrainer(config).train()


def load_classifier(model_dir: str, which: str = "best") -> Tuple[keras.Model, ClassifierConfig]:
  """Rebuilds a trained classifier from its training run's model_dir.

  Args:
    model_dir: the --model_dir of an `ebm_tf.train_classifier` run.
    which: 'best' (the weights with the best evaluation accuracy, `<model_dir>/best`; its
      accuracy is in `read_best(model_dir)`) or 'latest' (the newest readable training
      checkpoint in `<model_dir>/checkpoints`).

  Returns:
    (model, config): a float32 keras.Model mapping images [B, H, W, C] float32 in [-1, 1] to
    logits [B, num_classes] float32 (call it with training=False), and the run's config.

  Raises:
    ValueError: `which` not in ('best', 'latest').
    FileNotFoundError: no classifier_config.json, or no checkpoint of that kind.
    checkpoints.UnreadableCheckpointError: every checkpoint of that kind is damaged.
  """
  if which not in WHICH:
    raise ValueError(f"which must be one of {WHICH}; got {which!r}")
  config = classifier_config.load_config(model_dir)
  model = build_model(config, dtype="float32")
  directory = os.path.join(model_dir, BEST_DIR if which == "best" else CHECKPOINT_DIR)
  checkpointer = checkpoints.Checkpointer(directory, max_to_keep=None, classifier=model)
  paths = checkpointer.all_paths
  if not paths:
    raise FileNotFoundError(f"no {which} checkpoint in {directory!r}: has the run reached its "
                            "first evaluation (eval_every steps)?")
  failures = []
  for path in reversed(paths):
    try:
      # Training checkpoints also hold the optimizer and counters: only the model is wanted.
      checkpointer.restore(path, expect_partial=True)
    except checkpoints.UnreadableCheckpointError as error:
      logging.warning("%s; trying the previous one", error)
      failures.append(str(error))
      continue
    logging.info("loaded %s classifier from %s", config.classifier, path)
    return model, config
  raise checkpoints.UnreadableCheckpointError("; ".join(failures))
