"""Offline stand-in for @rules_cc on Debian's Bazel 4.2.3: every rule forwards to `native.*`.

@bazel_tools loads these names from @rules_cc, which Bazel would otherwise download. Debian's own
bazel-rules-cc package is written for newer Bazel (it needs use_cpp_toolchain) and fails on 4.2.3.
ebm-tf has no C++ code; these exist only so that analysis succeeds.
"""

def cc_binary(**kwargs):
    native.cc_binary(**kwargs)

def cc_import(**kwargs):
    native.cc_import(**kwargs)

def cc_library(**kwargs):
    native.cc_library(**kwargs)

def cc_proto_library(**kwargs):
    native.cc_proto_library(**kwargs)

def cc_test(**kwargs):
    native.cc_test(**kwargs)

def cc_toolchain(**kwargs):
    native.cc_toolchain(**kwargs)

def cc_toolchain_suite(**kwargs):
    native.cc_toolchain_suite(**kwargs)

def fdo_prefetch_hints(**kwargs):
    native.fdo_prefetch_hints(**kwargs)

def fdo_profile(**kwargs):
    native.fdo_profile(**kwargs)

def objc_import(**kwargs):
    native.objc_import(**kwargs)

def objc_library(**kwargs):
    native.objc_library(**kwargs)
