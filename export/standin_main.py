r"""Runs the loopback serving stand-in (a TEST DOUBLE, not TensorFlow Serving) from the shell.

  python -m export.standin_main --model_base_path=exports/purifier --model_name=purifier \
      --grpc_port=8500 --rest_port=8501

It serves the newest version under --model_base_path on 127.0.0.1 with TF Serving's gRPC
(PredictionService, ModelService) and REST (predict, status, metadata) APIs, so the clients can
be tried where TF Serving cannot be installed. It does not reproduce TF Serving's loader,
batching or version policy; deploy with `tensorflow/serving` (see the README).
"""

import time

from absl import app
from absl import flags
from absl import logging

from export import standin_server

_BASE = flags.DEFINE_string("model_base_path", None, "folder holding <version>/ exports")
_NAME = flags.DEFINE_string("model_name", "purifier", "model name in request URLs")
_GRPC_PORT = flags.DEFINE_integer("grpc_port", 8500, "gRPC port on 127.0.0.1 (0 = any free)")
_REST_PORT = flags.DEFINE_integer("rest_port", 8501, "REST port on 127.0.0.1 (0 = any free)")
_SECONDS = flags.DEFINE_float("serve_seconds", 0.0, "stop after this long (0 = until Ctrl-C)")
flags.mark_flag_as_required("model_base_path")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  server = standin_server.StandinModelServer(_BASE.value, _NAME.value,
                                             grpc_port=_GRPC_PORT.value,
                                             rest_port=_REST_PORT.value).start()
  logging.info("test stand-in (not TF Serving) serving %s: grpc://%s  %s", _NAME.value,
               server.grpc_target, server.rest_url)
  deadline = time.monotonic() + _SECONDS.value if _SECONDS.value > 0 else None
  try:
    while deadline is None or time.monotonic() < deadline:
      time.sleep(0.2)
  except KeyboardInterrupt:
    pass
  finally:
    server.stop()


if __name__ == "__main__":
  app.run(main)
