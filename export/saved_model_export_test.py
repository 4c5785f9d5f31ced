"""Tests of the versioned SavedModel export: layout, signatures, warmup, versions, atomicity."""

import os
from unittest import mock

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from export import saved_model_export
from export import testing_utils
from export import warmup


def _meta_graph(version_dir):
  with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
    (meta_graph,) = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs
  return meta_graph


class SavedModelExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.module, cls.result = testing_utils.shared_tiny_export(with_classifier=True)
    cls.x = testing_utils.images(2, seed=3)
    # Re-exporting one module is cheap (its functions are traced once).
    cls.small_module = testing_utils.tiny_module(with_classifier=False)

  def test_layout(self):
    version_dir = self.result.version_dir
    self.assertEqual(self.result.version, 1)
    self.assertEqual(version_dir, os.path.join(self.result.model_dir, "1"))
    self.assertTrue(os.path.isfile(os.path.join(version_dir, "saved_model.pb")))
    self.assertTrue(os.path.isfile(os.path.join(version_dir, "variables", "variables.index")))
    self.assertTrue(os.path.isfile(warmup.warmup_path(version_dir)))
    base = os.path.dirname(self.result.model_dir)
    self.assertEqual(self.result.models_config_path, os.path.join(base, "models.config"))
    with open(self.result.models_config_path) as f:
      config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    self.assertEqual(config.model_config_list.config[0].base_path, self.result.model_dir)
    self.assertTrue(os.path.isfile(os.path.join(base, "batching_parameters.txt")))
    info = saved_model_export.read_export_info(version_dir)
    self.assertEqual(info["purifier_config"]["max_num_steps"], 20)
    self.assertTrue(info["has_classifier"])
    self.assertEqual(os.listdir(self.result.model_dir), ["1"])  # No temporary leftovers.

  def test_signatures_for_tf_serving(self):
    meta_graph = _meta_graph(self.result.version_dir)
    self.assertEqual(list(meta_graph.meta_info_def.tags), ["serve"])
    signatures = meta_graph.signature_def
    self.assertContainsSubset(["serving_default", "purify", "energy", "serving_uint8"],
                              list(signatures))
    for name in ("serving_default", "purify", "energy", "serving_uint8"):
      self.assertEqual(signatures[name].method_name, "tensorflow/serving/predict")
      images = signatures[name].inputs["images"]
      self.assertEqual([d.size for d in images.tensor_shape.dim], [-1, 8, 8, 1])
    default = signatures["serving_default"]
    self.assertEqual(sorted(default.inputs), ["images", "num_repeats", "num_steps", "seed"])
    self.assertEqual(sorted(default.outputs), ["class_ids", "energies", "logits", "purified"])
    self.assertEqual(default.inputs["images"].dtype, tf.float32.as_datatype_enum)
    self.assertEqual(default.inputs["seed"].dtype, tf.int64.as_datatype_enum)
    self.assertEqual(signatures["serving_uint8"].inputs["images"].dtype,
                     tf.uint8.as_datatype_enum)
    self.assertEqual(sorted(default.defaults), ["num_repeats", "num_steps", "seed"])
    self.assertAllEqual(tf.make_ndarray(default.defaults["seed"]), [0, 0])
    self.assertEqual(int(tf.make_ndarray(default.defaults["num_steps"])),
                     self.module.config.default_num_steps)
    # Server-side batching needs every input and output of a signature batched on dimension 0.
    batchable = signatures["purify_batchable"]
    self.assertEqual(sorted(batchable.inputs), ["images", "seeds"])
    self.assertEqual(sorted(batchable.outputs), ["class_ids", "energies", "logits", "purified"])
    self.assertEqual(batchable.inputs["seeds"].dtype, tf.int64.as_datatype_enum)
    for info in list(batchable.inputs.values()) + list(batchable.outputs.values()):
      self.assertEqual(info.tensor_shape.dim[0].size, -1, msg=info.name)
    self.assertEmpty(batchable.defaults)

  def test_warmup_file_parses_and_replays(self):
    logs = warmup.read_warmup_file(warmup.warmup_path(self.result.version_dir))
    self.assertLen(logs, 5)  # Five signatures at batch size 1.
    loaded = tf.saved_model.load(self.result.version_dir)
    signatures_seen = set()
    for log in logs:
      request = log.predict_log.request
      self.assertEqual(request.model_spec.name, "purifier")
      inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
      outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
      for value in outputs.values():
        self.assertTrue(np.all(np.isfinite(value.numpy())))
      signatures_seen.add(request.model_spec.signature_name)
    self.assertEqual(signatures_seen, {"serving_default", "purify", "energy", "serving_uint8",
                                       "purify_batchable"})

  def test_tf1_session_loader_reproduces_in_process_outputs(self):
    # TF Serving runs SavedModels through the TF1 Session loader; a tf.Module holding Keras 3
    # models breaks there ("Could not find variable") while tf.saved_model.load works.
    meta_graph_outputs = {}
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
      meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"],
                                                        self.result.version_dir)
      signature = meta_graph.signature_def["serving_default"]
      feed = {signature.inputs["images"].name: self.x,
              signature.inputs["seed"].name: np.array([5, 6], np.int64),
              signature.inputs["num_steps"].name: np.int32(3),
              signature.inputs["num_repeats"].name: np.int32(2)}
      names = sorted(signature.outputs)
      values = session.run([signature.outputs[n].name for n in names], feed)
      meta_graph_outputs = dict(zip(names, values))
    expected = self.module.serve(self.x, tf.constant([5, 6], tf.int64), tf.constant(3),
                                 tf.constant(2))
    for name in names:
      self.assertAllClose(meta_graph_outputs[name], expected[name], rtol=1e-6, atol=1e-6)

  def test_versions_increase_and_explicit_versions_must_be_newer(self):
    base = self.create_tempdir().full_path
    module = self.small_module
    first = saved_model_export.export_saved_model(module, base, "m")
    second = saved_model_export.export_saved_model(module, base, "m")
    self.assertEqual((first.version, second.version), (1, 2))
    with self.assertRaisesRegex(ValueError, "must be greater than the newest existing version 2"):
      saved_model_export.export_saved_model(module, base, "m", version=2)
    self.assertEqual(saved_model_export.export_saved_model(module, base, "m", version=7).version,
                     7)
    self.assertEqual(saved_model_export.export_saved_model(module, base, "m").version, 8)
    self.assertEqual(saved_model_export.list_versions(os.path.join(base, "m")), [1, 2, 7, 8])
    with open(os.path.join(base, "models.config")) as f:
      config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    self.assertLen(config.model_config_list.config, 1)  # Updated, not duplicated.

  def test_failed_export_publishes_nothing(self):
    base = self.create_tempdir().full_path
    module = self.small_module
    with mock.patch.object(warmup, "write_warmup_file", side_effect=OSError("disk full")):
      with self.assertRaisesRegex(OSError, "disk full"):
        saved_model_export.export_saved_model(module, base, "m")
    model_dir = os.path.join(base, "m")
    self.assertEqual(saved_model_export.list_versions(model_dir), [])
    self.assertEqual(os.listdir(model_dir), [])  # The temporary directory was removed too.

  def test_leftover_temporary_directory_is_invisible(self):
    # What a killed export leaves behind (see export_purifier_test for a real kill).
    base = self.create_tempdir().full_path
    leftover = os.path.join(base, "m", saved_model_export.TEMP_PREFIX + "dead")
    os.makedirs(os.path.join(leftover, "variables"))
    with open(os.path.join(leftover, "saved_model.pb"), "wb") as f:
      f.write(b"\x08partial")
    self.assertEqual(saved_model_export.list_versions(os.path.join(base, "m")), [])
    module = self.small_module
    self.assertEqual(saved_model_export.export_saved_model(module, base, "m").version, 1)

  def test_xla_export_marks_functions_for_compilation(self):
    # The purify signatures' XLA compile takes ~15 s on CPU; the energy signature's is quick.
    module = testing_utils.tiny_module(with_classifier=False, jit_compile=True)
    result = saved_model_export.export_saved_model(module, self.create_tempdir().full_path, "m")
    library = _meta_graph(result.version_dir).graph_def.library
    compiled = [f.signature.name for f in library.function
                if f.attr["_XlaMustCompile"].b]
    self.assertNotEmpty(compiled)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
      signature = tf.compat.v1.saved_model.loader.load(
          session, ["serve"], result.version_dir).signature_def["energy"]
      energies = session.run(signature.outputs["energies"].name,
                             {signature.inputs["images"].name: self.x})
    expected = module.energy(self.x)["energies"]  # In-process, also XLA-compiled.
    self.assertAllClose(energies, expected, rtol=1e-5, atol=1e-6)

  def test_bad_version_argument(self):
    with self.assertRaisesRegex(ValueError, "version must be a positive int"):
      saved_model_export.export_saved_model(self.module, self.create_tempdir().full_path, "m",
                                            version=0)


if __name__ == "__main__":
  tf.test.main()
