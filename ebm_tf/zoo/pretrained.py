"""Shipping trained models: a run directory reduced to its weights, its config and a model card.

`ship_run` turns a training run's `--model_dir` (an `ebm_tf.train` run or an
`ebm_tf.train_classifier` run) into a directory that every tool which takes a run directory
(`ebm_tf.sample`, `ebm_tf.evaluate_*`, `ebm_tf.attack`, `export.export_purifier`) accepts
unchanged, because it has the same layout, only less in it:

    EBM run:         config.json, checkpoints/ckpt-<step> holding "ebm" (+ "generator" for
                     coop modes, + "prior_ebm" for a longrun correction run), MODEL_CARD.md,
                     model_card.json
    classifier run:  classifier_config.json, best/ckpt-<step> holding "classifier",
                     best/best.json, MODEL_CARD.md, model_card.json

No optimizer slots, no persistent banks, no data iterator, no step counters: such a directory
is for sampling, purification, evaluation and export, not for resuming training (training into
it fails the checkpoint structure check, so it is never overwritten by accident).

A longrun correction run names its prior run (`prior_model_dir`): the shipped config names the
shipped prior by a path relative to the shipped directory (e.g. `../longrun_prior_digits`), which
`config.load_config` resolves against the run directory. The whole directory is written under a
temporary name and renamed into place, so a reader never sees half a shipped model.
"""

import dataclasses
import json
import os
import re
import shutil
import uuid
from typing import Any, Dict, Mapping, Optional

import keras
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf.internal import file_io
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
# The card fields a shipped model must state (values are free text or numbers).
REQUIRED_CARD_FIELDS = ("data", "preset", "compute", "headline", "how_made")

_CKPT_STEP = re.compile(r"ckpt-(\d+)$")


def run_kind(model_dir: str) -> str:
  """'ebm' for an `ebm_tf.train` run directory, 'classifier' for an `ebm_tf.train_classifier`
  one.

  Raises:
    FileNotFoundError: `model_dir` has neither config.json nor classifier_config.json.
  """
  if os.path.exists(os.path.join(model_dir, config_lib.CONFIG_FILENAME)):
    return "ebm"
  if os.path.exists(os.path.join(model_dir, classifier_config.CONFIG_FILENAME)):
    return "classifier"
  raise FileNotFoundError(
      f"{model_dir!r} is not a run directory: it has neither {config_lib.CONFIG_FILENAME} "
      f"(ebm_tf.train) nor {classifier_config.CONFIG_FILENAME} (ebm_tf.train_classifier)")


def _step_of(path: str) -> int:
  match = _CKPT_STEP.search(path)
  if not match:
    raise ValueError(f"checkpoint prefix {path!r} does not end in ckpt-<step>")
  return int(match.group(1))


def _count_parameters(*models) -> int:
  return int(sum(np.prod(v.shape) for m in models for v in m.weights))


def _ebm_trackables(config: config_lib.TrainConfig) -> Dict[str, keras.Model]:
  """The networks (by checkpoint key) that sampling, purification and export restore."""
  trackables = {"ebm": runs.build_ebm(config)}
  if config.init_mode.uses_generator:
    trackables["generator"] = runs.build_generator(config)
  if config.prior_model_dir:
    trackables["prior_ebm"] = runs.build_ebm(config_lib.load_config(config.prior_model_dir))
  return trackables


def _write_ebm_run(model_dir: str, temp_dir: str, shipped_name: str,
                   prior_name: Optional[str]) -> Dict[str, Any]:
  config = config_lib.load_config(model_dir)
  if config.prior_model_dir and not prior_name:
    raise ValueError(f"{model_dir!r} is a longrun correction run (prior_model_dir="
                     f"{config.prior_model_dir!r}): give prior_name, the name of the shipped prior "
                     "directory beside this one")
  if prior_name and not config.prior_model_dir:
    raise ValueError(f"prior_name={prior_name!r} given, but {model_dir!r} has no prior_model_dir")
  trackables = _ebm_trackables(config)
  path = checkpoints.restore_from_run(model_dir, **trackables)
  shipped = dataclasses.replace(
      config, model_dir=shipped_name,
      prior_model_dir=os.path.join("..", prior_name) if prior_name else None)
  config_lib.save_config(shipped, temp_dir)
  step = _step_of(path)
  checkpoints.Checkpointer(os.path.join(temp_dir, "checkpoints"), max_to_keep=1,
                           **trackables).save(step)
  return {"kind": "ebm", "step": step, "source_checkpoint": path,
          "networks": sorted(trackables),
          "parameters": _count_parameters(*trackables.values()),
          "config": config.ebm + (f" width {config.ebm_width}" if config.ebm_width else "")}


def _write_classifier_run(model_dir: str, temp_dir: str, shipped_name: str) -> Dict[str, Any]:
  model, config = classifier_lib.load_classifier(model_dir, "best")
  best = classifier_lib.read_best(model_dir)
  classifier_config.save_config(dataclasses.replace(config, model_dir=shipped_name), temp_dir)
  best_dir = os.path.join(temp_dir, classifier_lib.BEST_DIR)
  path = checkpoints.Checkpointer(best_dir, max_to_keep=1, classifier=model).save(
      int(best["step"]))
  file_io.write_json_atomic(os.path.join(best_dir, classifier_lib.BEST_FILENAME), best)
  return {"kind": "classifier", "step": int(best["step"]), "source_checkpoint": path,
          "networks": ["classifier"], "parameters": _count_parameters(model),
          "config": config.classifier, "best": best}


def render_card(name: str, card: Mapping[str, Any]) -> str:
  """The MODEL_CARD.md text of a shipped model from its model_card.json values."""
  lines = [f"# {name}", ""]
  order = ("what", "data", "preset", "overrides", "iterations", "networks", "parameters",
           "compute", "headline", "how_made", "limitations")
  for key in order + tuple(sorted(set(card) - set(order))):
    if key not in card:
      continue
    value = card[key]
    if isinstance(value, (list, tuple)):
      value = ", ".join(str(v) for v in value)
    elif isinstance(value, Mapping):
      value = "; ".join(f"{k}: {v}" for k, v in value.items())
    lines.append(f"- **{key.replace('_', ' ')}**: {value}")
  lines.append("")
  return "\n".join(lines)


def ship_run(model_dir: str, output_dir: str, card: Mapping[str, Any], *,
             prior_name: Optional[str] = None, overwrite: bool = False) -> Dict[str, Any]:
  """Writes the weights-only, tool-compatible copy of run `model_dir` to `output_dir`.

  Args:
    model_dir: an `ebm_tf.train` or `ebm_tf.train_classifier` run directory (its newest
      checkpoint; for a classifier its best checkpoint).
    output_dir: the shipped directory, e.g. pretrained/midrun_digits; its base name is recorded
      as the shipped config's model_dir.
    card: model-card values; must hold REQUIRED_CARD_FIELDS (free text / numbers). The step,
      networks and parameter count are added from the checkpoint.
    prior_name: for a longrun correction run, the base name of the shipped prior directory
      beside `output_dir` (written as `../<prior_name>` in the shipped config).
    overwrite: replace an existing `output_dir` (atomically); otherwise an existing one is an
      error.

  Returns:
    The full card written to model_card.json.

  Raises:
    ValueError: missing card fields, an existing output_dir without overwrite, or a
      prior_name mismatch. FileNotFoundError: not a run directory / no checkpoint.
  """
  missing = [f for f in REQUIRED_CARD_FIELDS if not card.get(f)]
  if missing:
    raise ValueError(f"the model card of {output_dir!r} lacks {missing} (required: "
                     f"{list(REQUIRED_CARD_FIELDS)})")
  output_dir = os.path.normpath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise ValueError(f"{output_dir!r} exists; pass overwrite=True (--overwrite) to replace it")
  name = os.path.basename(output_dir)
  parent = os.path.dirname(output_dir) or "."
  os.makedirs(parent, exist_ok=True)
  temp_dir = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
  os.makedirs(temp_dir)
  try:
    kind = run_kind(model_dir)
    if kind == "ebm":
      facts = _write_ebm_run(model_dir, temp_dir, name, prior_name)
    else:
      if prior_name:
        raise ValueError("prior_name applies to longrun correction runs, not classifiers")
      facts = _write_classifier_run(model_dir, temp_dir, name)
    full_card = dict(card, iterations=facts["step"], networks=facts["networks"],
                     parameters=facts["parameters"], kind=facts["kind"])
    file_io.write_json_atomic(os.path.join(temp_dir, CARD_JSON), full_card)
    file_io.write_text_atomic(os.path.join(temp_dir, CARD_MARKDOWN), render_card(name, full_card))
    file_io.replace_directory(temp_dir, output_dir)
  except BaseException:
    shutil.rmtree(temp_dir, ignore_errors=True)
    raise
  return full_card


def read_card(shipped_dir: str) -> Dict[str, Any]:
  """The model_card.json of a shipped model directory.

  Raises:
    FileNotFoundError: `shipped_dir` has no model_card.json (not a shipped model).
  """
  path = os.path.join(shipped_dir, CARD_JSON)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CARD_JSON} in {shipped_dir!r}: not a shipped model directory "
                            "(see ebm_tf.zoo.pretrained)")
  with open(path) as f:
    return json.load(f)


def checkpoint_keys(shipped_dir: str) -> set:
  """The top-level object names in a shipped model's checkpoint (e.g. {'ebm', 'generator'}),
  leaving out tf.train.Checkpoint's own save_counter."""
  kind = run_kind(shipped_dir)
  directory = os.path.join(shipped_dir, "checkpoints" if kind == "ebm"
                           else classifier_lib.BEST_DIR)
  path = tf.train.latest_checkpoint(directory)
  if not path:
    raise FileNotFoundError(f"no checkpoint in {directory!r}")
  return {name.split("/")[0] for name, _ in tf.train.list_variables(path)
          if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")} - {"save_counter"}
