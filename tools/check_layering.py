"""Build-time layer check: fails when a source file imports a package its layer may not use.

Run by the genrule of every `ebm_package` (tools/ebm_package.bzl) over the package's sources:

  check_layering.py --package=ebm_tf.mcmc --allowed=ebm_tf.internal,... \
      --packages=<every package of tools/layers.bzl> --output=<stamp> file.py ...

An import of this workspace (`ebm_tf...`, `export...`, `tests...`, `bench...`) belongs to the
package `ebm_tf.<x>` when that is a known package, else to the top-level package `ebm_tf`. It is
allowed when that package is the file's own or one of --allowed. Other imports (TensorFlow, absl,
...) are not checked. Exit status 1 with one line per forbidden import; on success the stamp
file is written (empty), which is what the build depends on. Standard library only.
"""

import argparse
import ast
import sys

WORKSPACE_ROOTS = ("ebm_tf", "export", "tests", "bench")


def imported_modules(source: str, filename: str):
  """Yields (line, dotted module) for each absolute import in `source`."""
  for node in ast.walk(ast.parse(source, filename)):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      for alias in node.names:
        # `from ebm_tf import models` imports the package ebm_tf.models.
        yield node.lineno, (f"{node.module}.{alias.name}" if node.module == "ebm_tf"
                            else node.module)


def owning_package(module: str, packages):
  """The workspace package that `module` belongs to, or None for a third-party module."""
  parts = module.split(".")
  if parts[0] not in WORKSPACE_ROOTS:
    return None
  if parts[0] == "ebm_tf":
    return f"ebm_tf.{parts[1]}" if len(parts) > 1 and f"ebm_tf.{parts[1]}" in packages else "ebm_tf"
  return parts[0]


def forbidden_imports(files, package, allowed, packages):
  """Returns 'file:line: ...' messages for imports of packages outside `allowed` + `package`."""
  allowed = set(allowed) | {package}
  errors = []
  for path in files:
    with open(path, encoding="utf-8") as f:
      source = f.read()
    for line, module in imported_modules(source, path):
      owner = owning_package(module, packages)
      if owner is not None and owner not in allowed:
        errors.append(f"{path}:{line}: `{module}` is in package {owner}, which {package} may not "
                      f"import (allowed: {', '.join(sorted(allowed))}; the layers are "
                      "tools/layers.bzl)")
  return errors


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--package", required=True)
  parser.add_argument("--allowed", default="")
  parser.add_argument("--packages", required=True)
  parser.add_argument("--output", required=True)
  parser.add_argument("files", nargs="*")
  args = parser.parse_args(argv)
  errors = forbidden_imports(args.files, args.package, [a for a in args.allowed.split(",") if a],
                             set(args.packages.split(",")))
  if errors:
    print("\n".join(["layer check failed:"] + errors), file=sys.stderr)
    return 1
  with open(args.output, "w", encoding="utf-8"):
    pass
  return 0


if __name__ == "__main__":
  sys.exit(main())
