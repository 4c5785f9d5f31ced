"""Tests of models.config and batching parameters text protos."""

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from export import serving_config


def _batching_parameters_class():
  """tensorflow.serving.BatchingParameters built from the upstream field list.

  The proto is not in the pip package; field names and numbers are those of
  tensorflow_serving/servables/tensorflow/session_bundle_config.proto.
  """
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  file_proto = descriptor_pb2.FileDescriptorProto(
      name="batching_parameters_test.proto", package="tensorflow.serving", syntax="proto3",
      dependency=["google/protobuf/wrappers.proto"])
  message = file_proto.message_type.add(name="BatchingParameters")
  field = descriptor_pb2.FieldDescriptorProto
  for number, name, type_name in [(1, "max_batch_size", ".google.protobuf.Int64Value"),
                                  (2, "batch_timeout_micros", ".google.protobuf.Int64Value"),
                                  (3, "max_enqueued_batches", ".google.protobuf.Int64Value"),
                                  (4, "num_batch_threads", ".google.protobuf.Int64Value"),
                                  (5, "thread_pool_name", ".google.protobuf.StringValue")]:
    message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                      label=field.LABEL_OPTIONAL, type_name=type_name)
  message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                    label=field.LABEL_REPEATED)
  message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                    label=field.LABEL_OPTIONAL)
  pool.Add(file_proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


class ServingConfigTest(tf.test.TestCase):

  def test_models_config_parses_as_model_server_config(self):
    text = serving_config.merged_models_config(
        None, serving_config.model_config("purifier", "/models/purifier"))
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (entry,) = parsed.model_config_list.config
    self.assertEqual(entry.name, "purifier")
    self.assertEqual(entry.base_path, "/models/purifier")
    self.assertEqual(entry.model_platform, "tensorflow")
    self.assertEqual(entry.model_version_policy.latest.num_versions, 1)

  def test_merge_replaces_same_name_and_keeps_others(self):
    text = serving_config.merged_models_config(
        None, serving_config.model_config("other", "/models/other"))
    text = serving_config.merged_models_config(
        text, serving_config.model_config("purifier", "/old"))
    text = serving_config.merged_models_config(
        text, serving_config.model_config("purifier", "/new", num_versions=2))
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in parsed.model_config_list.config}
    self.assertEqual(sorted(entries), ["other", "purifier"])
    self.assertEqual(entries["purifier"].base_path, "/new")
    self.assertEqual(entries["purifier"].model_version_policy.latest.num_versions, 2)
    self.assertEqual(entries["other"].base_path, "/models/other")

  def test_merge_rejects_garbage(self):
    with self.assertRaisesRegex(ValueError, "not a ModelServerConfig"):
      serving_config.merged_models_config("model_config_list { bogus: 1 }",
                                          serving_config.model_config("p", "/p"))

  def test_batching_parameters_parse_with_upstream_fields(self):
    text = serving_config.batching_parameters_text(
        64, batch_timeout_micros=1000, max_enqueued_batches=10, num_batch_threads=2,
        allowed_batch_sizes=[8, 32, 64])
    parsed = text_format.Parse(text, _batching_parameters_class()())
    self.assertEqual(parsed.max_batch_size.value, 64)
    self.assertEqual(parsed.batch_timeout_micros.value, 1000)
    self.assertEqual(parsed.max_enqueued_batches.value, 10)
    self.assertEqual(parsed.num_batch_threads.value, 2)
    self.assertEqual(list(parsed.allowed_batch_sizes), [8, 32, 64])

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "max_batch_size must be an int >= 1"):
      serving_config.batching_parameters_text(0)
    with self.assertRaisesRegex(ValueError, "allowed_batch_sizes must increase and end at"):
      serving_config.batching_parameters_text(64, allowed_batch_sizes=[8, 32])
    with self.assertRaisesRegex(ValueError, "model_name"):
      serving_config.model_config("a/b", "/x")


if __name__ == "__main__":
  tf.test.main()
