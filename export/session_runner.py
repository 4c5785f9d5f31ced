r"""Runs signatures of an exported version in a TF1 Session (tag "serve"), as TF Serving loads it.

Standalone on purpose: it imports only TensorFlow and numpy (not ebm_tf, not Keras), so that
another TensorFlow runtime can run it, e.g. the TF 2.20 runtime of TF Serving 2.20
(export/tf220_compat_test.py):

    <python> export/session_runner.py --version_dir=exports/purifier/1 \
        --inputs=requests.npz --output=answers.npz

`--inputs` is an .npz whose keys are `<signature>/<input name>`; every signature named there is
run once with those inputs (missing inputs take the SignatureDef's defaults, as in TF Serving),
and the output .npz holds `<signature>/<output name>` plus `tf_version` (the runtime's
`tf.__version__`). It loads with `tf.compat.v1.saved_model.loader.load(session, ["serve"], dir)`
and feeds the signature's tensors by name, the way TF Serving's SavedModelBundle and RunPredict
do. It is not TF Serving: it checks the TensorFlow runtime, not the server around it.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf


def run_signatures(version_dir, requests):
  """Runs each signature of `requests` ({signature: {input: array}}) in one TF1 Session.

  Returns:
    {signature: {output name: array}}.

  Raises:
    KeyError: a signature or input name is not in the SavedModel.
    tf.errors.OpError: a graph error (e.g. a failed input check).
  """
  graph = tf.Graph()
  answers = {}
  with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
    for name, inputs in requests.items():
      signature = meta_graph.signature_def[name]
      unknown = sorted(set(inputs) - set(signature.inputs))
      if unknown:
        raise KeyError(f"signature {name} has no inputs {unknown}; it has "
                       f"{sorted(signature.inputs)}")
      feed = {}
      for alias, info in signature.inputs.items():
        if alias in inputs:
          feed[info.name] = inputs[alias]
        else:
          feed[info.name] = tf.make_ndarray(signature.defaults[alias])
      aliases = sorted(signature.outputs)
      values = session.run([signature.outputs[a].name for a in aliases], feed_dict=feed)
      answers[name] = dict(zip(aliases, values))
  return answers


def _write_npz_atomic(path, arrays):
  # Temp file + rename in the target directory (this script cannot import ebm_tf.internal.file_io).
  directory = os.path.dirname(os.path.abspath(path))
  handle, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(handle, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    if os.path.exists(temp):
      os.remove(temp)
    raise


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--version_dir", required=True, help="an exported <model>/<version> dir")
  parser.add_argument("--inputs", required=True, help=".npz with <signature>/<input> keys")
  parser.add_argument("--output", required=True, help=".npz written with the outputs")
  args = parser.parse_args(argv)
  requests = {}
  with np.load(args.inputs) as data:
    for key in data.files:
      signature, sep, name = key.partition("/")
      if not sep or not name:
        raise SystemExit(f"--inputs keys must be <signature>/<input>; got {key!r}")
      requests.setdefault(signature, {})[name] = data[key]
  answers = run_signatures(args.version_dir, requests)
  arrays = {f"{sig}/{name}": value for sig, outputs in answers.items()
            for name, value in outputs.items()}
  arrays["tf_version"] = np.array(tf.__version__)
  _write_npz_atomic(args.output, arrays)
  return 0


if __name__ == "__main__":
  sys.exit(main())
