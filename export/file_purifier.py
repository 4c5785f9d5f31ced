"""Purifies image files through a served purifier and writes the purified PNGs.

Used by the `purify` command-line tool (export/purify_main.py). Images are decoded with the
model's channel count, must have the model's height and width (or are resized bilinearly with
`resize=True`), are scaled to [-1, 1], sent in batches, and the purified images are written as
`<output_dir>/<file stem>.purified.png` (clipped to [-1, 1] and mapped to [0, 255]).
"""

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from export import client as client_lib


def model_image_shape(client: client_lib._ClientBase,  # pylint: disable=protected-access
                      signature_name: str = client_lib.DEFAULT_SIGNATURE):
  """(H, W, C) of the served signature's `images` input, from the model metadata."""
  signature = client.metadata()[signature_name]
  dims = [d.size for d in signature.inputs["images"].tensor_shape.dim]
  if len(dims) != 4 or min(dims[1:]) < 1:
    raise ValueError(f"signature {signature_name!r} does not take fixed-size NHWC images; "
                     f"its images input has shape {dims}")
  return tuple(dims[1:])


def load_images(paths: Sequence[str], image_shape, resize: bool = False) -> np.ndarray:
  """Reads PNG/JPEG/BMP/GIF files as float32 [N, H, W, C] in [-1, 1].

  Raises:
    ValueError: an image of another size when `resize` is False, or an unreadable file.
  """
  h, w, c = image_shape
  out = []
  for path in paths:
    try:
      image = tf.io.decode_image(tf.io.read_file(path), channels=c, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
      raise ValueError(f"cannot read image {path}: {error.message}") from None
    if tuple(image.shape[:2]) != (h, w):
      if not resize:
        raise ValueError(f"{path} is {image.shape[0]}x{image.shape[1]} but the model takes "
                         f"{h}x{w} images (pass --resize to resize)")
      image = tf.image.resize(tf.cast(image, tf.float32), (h, w), antialias=True)
    out.append(tf.cast(image, tf.float32).numpy() / 127.5 - 1.0)
  return np.clip(np.stack(out), -1.0, 1.0).astype(np.float32)


def to_png(image: np.ndarray) -> bytes:
  """float [H, W, C] (any range, clipped to [-1, 1]) -> PNG bytes."""
  pixels = np.round((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
  return tf.io.encode_png(pixels).numpy()


def purify_files(client: client_lib._ClientBase,  # pylint: disable=protected-access
                 paths: Sequence[str], output_dir: str, *, seed: Sequence[int] = (0, 0),
                 num_steps: Optional[int] = None, num_repeats: Optional[int] = None,
                 batch_size: int = 16, resize: bool = False,
                 signature_name: str = client_lib.DEFAULT_SIGNATURE) -> List[Dict]:
  """Purifies `paths` through `client` and writes PNGs (and results.json) into `output_dir`.

  Batch b (of `batch_size` files) uses the seed [seed[0], seed[1] + b], so a file's result
  depends on its position in the list (and is reproducible for the same list).

  Returns:
    One dict per file: input, output (PNG path), energy, and class_id when the model classifies.

  Raises:
    client.ServingError: the server rejected a batch (e.g. more steps than the export allows).
    ValueError: unreadable or wrongly sized images.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1; got {batch_size}")
  if not paths:
    raise ValueError("no image files given")
  image_shape = model_image_shape(client, signature_name)
  os.makedirs(output_dir, exist_ok=True)
  results = []
  for b, start in enumerate(range(0, len(paths), batch_size)):
    batch_paths = list(paths[start:start + batch_size])
    images = load_images(batch_paths, image_shape, resize)
    outputs = client.purify(images, seed=[int(seed[0]), int(seed[1]) + b], num_steps=num_steps,
                            num_repeats=num_repeats, signature_name=signature_name)
    for i, path in enumerate(batch_paths):
      stem = os.path.splitext(os.path.basename(path))[0]
      target = os.path.join(output_dir, f"{stem}.purified.png")
      with open(target, "wb") as f:
        f.write(to_png(outputs["purified"][i]))
      record = {"input": path, "output": target, "energy": float(outputs["energies"][i])}
      if "class_ids" in outputs:
        record["class_id"] = int(outputs["class_ids"][i])
      results.append(record)
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results
