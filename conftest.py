"""pytest glue: absltest helpers (create_tempdir, FLAGS.test_tmpdir) need parsed absl flags."""

from absl import flags


def pytest_configure(config):
  del config
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
