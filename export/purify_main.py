r"""`purify`: sends image files to a served purifier and writes the purified PNGs.

    python -m export.purify_main --server=grpc://127.0.0.1:8500 --output_dir=out a.png b.png
    python -m export.purify_main --server=http://127.0.0.1:8501 --num_steps=200 \
        --num_repeats=8 --output_dir=out digits/*.png

Writes `<output_dir>/<stem>.purified.png` per image and `<output_dir>/results.json` (energy and,
for classifier exports, the EOT class id of each image), and prints one line per image.
"""

from absl import app
from absl import flags

from export import client as client_lib
from export import file_purifier


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the tool's flags on `flag_values` (binaries only; library code defines none)."""
  def string(name, default, help_text):
    flags.DEFINE_string(name, default, help_text, flag_values=flag_values)

  def integer(name, default, help_text):
    flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)

  string("server", "grpc://127.0.0.1:8500", "grpc://host:port (gRPC) or http://host:port (REST)")
  string("model_name", "purifier", "served model name")
  string("output_dir", None, "where purified PNGs are written")
  flags.DEFINE_list("seed", ["0", "0"], "two ints: the stateless seed of the first batch",
                    flag_values=flag_values)
  integer("num_steps", None, "Langevin steps (default: the export's)")
  integer("num_repeats", None, "EOT repeats (default: the export's)")
  integer("batch_size", 16, "images per request")
  flags.DEFINE_bool("resize", False, "resize images to the model's size", flag_values=flag_values)
  flags.DEFINE_float("timeout_s", 300.0, "deadline of each request in seconds",
                     flag_values=flag_values)
  integer("max_attempts", 3, "attempts per request (transient errors)")


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  f = flag_values
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more image files")
  if not f.output_dir:
    raise app.UsageError("--output_dir is required")
  if len(f.seed) != 2:
    raise app.UsageError(f"--seed must be two integers; got {f.seed}")
  with client_lib.connect(f.server, f.model_name, timeout_s=f.timeout_s,
                          max_attempts=f.max_attempts) as client:
    results = file_purifier.purify_files(
        client, paths, f.output_dir, seed=[int(s) for s in f.seed], num_steps=f.num_steps,
        num_repeats=f.num_repeats, batch_size=f.batch_size, resize=f.resize)
  for record in results:
    label = f" class {record['class_id']}" if "class_id" in record else ""
    print(f"{record['input']} -> {record['output']} energy {record['energy']:.4g}{label}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
