"""Repository rule: a Python 3 toolchain pinned to the project's virtual environment.

The interpreter is $EBM_PYTHON when set (an absolute path), otherwise <workspace>/.venv/bin/python3.
Bazel 4's autodetecting toolchain would run the first `python3` on the action's PATH instead, and
`--python_path` is ignored while toolchains are on. Nothing is downloaded.
"""

def _local_venv_python_impl(rctx):
    python = rctx.os.environ.get("EBM_PYTHON", "")
    if not python:
        workspace_dir = rctx.path(Label("@//:WORKSPACE")).dirname
        python = str(workspace_dir) + "/.venv/bin/python3"
    if not python.startswith("/"):
        fail("EBM_PYTHON must be an absolute path to a python3 executable; got %r" % python)
    if not rctx.path(python).exists:
        fail(("Python interpreter %s not found: create the virtual environment " +
              "(python3 -m venv .venv && .venv/bin/pip install -r requirements.txt) " +
              "or set EBM_PYTHON=/absolute/path/to/python3") % python)

    rctx.file("interpreter_path.txt", python + "\n")

    # stub_shebang names the interpreter: Bazel 4's default `#!/usr/bin/env python` finds no
    # `python` under --incompatible_strict_action_env (exit 127).
    rctx.file("BUILD", """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

# The configured interpreter's path, for tests that check which Python runs them.
exports_files(["interpreter_path.txt"], visibility = ["//visibility:public"])

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "py_runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":py_runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(python = python))

local_venv_python = repository_rule(
    implementation = _local_venv_python_impl,
    local = True,
    environ = ["EBM_PYTHON"],
    doc = "A py_runtime toolchain for <workspace>/.venv/bin/python3 or $EBM_PYTHON.",
)
