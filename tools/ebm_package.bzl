"""`ebm_package()`: the BUILD of one Python package of ebm-tf, its deps taken from tools/layers.bzl.

One call per BUILD file declares:
  - `py_library(name)` over the package's modules (every *.py that is not a test), with deps =
    the packages that tools/layers.bzl lets this package import, and the layer check (a genrule
    running //tools:check_layering over the sources) as data, so that `bazel build` of the
    library fails on an import the layers forbid;
  - one `py_binary` per name in `binaries` (absl binaries; `*_main.py` are added), on the library;
  - one `py_test` per *_test.py, on the library plus TEST_ONLY_LAYERS, with its own layer check.
The Python package is the BUILD file's directory with '/' -> '.', e.g. ebm_tf/mcmc -> ebm_tf.mcmc.
"""

load("//tools:layers.bzl", "LAYERS", "TEST_ONLY_LAYERS")

def _label(package):
    """'ebm_tf.mcmc' -> '//ebm_tf/mcmc', 'tests' -> '//tests:testlib', 'bench' -> '//bench:bench_lib'."""
    if package == "tests":
        return "//tests:testlib"
    if package == "bench":
        return "//bench:bench_lib"
    return "//" + package.replace(".", "/")

def _layer_check(name, package, allowed, srcs):
    native.genrule(
        name = name,
        srcs = srcs,
        outs = [name + ".ok"],
        cmd = ("$(location //tools:check_layering) --package=%s --allowed=%s --packages=%s " +
               "--output=$@ $(SRCS)") % (package, ",".join(allowed), ",".join(sorted(LAYERS.keys()))),
        tools = ["//tools:check_layering"],
    )
    return ":" + name

def ebm_package(
        name = None,
        binaries = [],
        data = [],
        test_data = {},
        test_sizes = {},
        slow_tests = [],
        all_scripts_are_binaries = False):
    """Declares the library, binaries and tests of this directory's Python package.

    Args:
      name: library target name; default the directory's last component ("mcmc").
      binaries: file names without .py of the absl binaries of the package.
      data: data of the library (e.g. serving configs); //:flags is always included.
      test_data: test target name -> extra data labels.
      test_sizes: test target name -> "small" | "large" (default "medium").
      slow_tests: test target names tagged manual (run them by name).
      all_scripts_are_binaries: every non-test module is also a py_binary (bench/).
    """
    package = native.package_name().replace("/", ".")
    if package not in LAYERS:
        fail("package %s is not in tools/layers.bzl: add it with the packages it may import" % package)
    name = name or native.package_name().split("/")[-1]
    depth = len(native.package_name().split("/"))
    allowed = LAYERS[package]
    test_allowed = allowed + [p for p in TEST_ONLY_LAYERS.get(package, []) if p not in allowed]
    srcs = native.glob(["*.py"], exclude = ["*_test.py"], allow_empty = True)
    tests = native.glob(["*_test.py"], allow_empty = True)
    lib_check = _layer_check(name + "_layer_check", package, allowed, srcs)
    native.py_library(
        name = name,
        srcs = srcs,
        data = data + ["//:flags", lib_check],
        imports = ["/".join([".."] * depth)],  # the workspace root: `import ebm_tf.mcmc` resolves
        deps = [_label(p) for p in allowed],
    )
    binary_names = binaries + [
        f[:-3]
        for f in native.glob(["*_main.py"], allow_empty = True)
        if f[:-3] not in binaries
    ]
    if all_scripts_are_binaries:
        binary_names = [f[:-3] for f in srcs if f != "__init__.py"]
    for binary in binary_names:
        native.py_binary(
            name = binary,
            srcs = [binary + ".py"],
            main = binary + ".py",
            python_version = "PY3",
            deps = [":" + name],
        )
    if not tests:
        return
    test_check = _layer_check(name + "_test_layer_check", package, test_allowed, tests)
    for f in tests:
        test = f[:-3]
        native.py_test(
            name = test,
            size = "large" if test in slow_tests else test_sizes.get(test, "medium"),
            srcs = [f],
            data = ["//:flags", test_check] + test_data.get(test, []),
            main = f,
            python_version = "PY3",
            tags = ["manual"] if test in slow_tests else [],
            deps = [":" + name] + [_label(p) for p in test_allowed if p not in allowed],
        )
