"""The layers of ebm-tf: which Python package may import which. The one source of the design.

Each key is a Python package of this workspace; its value lists the packages its library
modules may import (besides itself): its explicit Bazel deps, derived by `ebm_package` in
tools/ebm_package.bzl. A package may import only from packages listed here, and the listed
packages are all lower in the stack, so an upward import or a new dependency not written here
fails `bazel build` (the layer check runs when the library is built). docs/DESIGN.md shows the
same table (tests/design_doc_test.py keeps them equal).

From the bottom: internal helpers; data, models and the sampler (mcmc); training; the
classifier; the defense and evaluation tools (siblings: neither imports the other); shipping
trained models (zoo) and test fixtures (testing); the binaries (`python -m ebm_tf.<name>`);
export (serving), bench and the cross-module tests.
"""

LAYERS = {
    "ebm_tf.internal": [],
    "ebm_tf.data": [],
    "ebm_tf.models": [],
    "ebm_tf.mcmc": ["ebm_tf.internal"],
    "ebm_tf.training": ["ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.mcmc"],
    "ebm_tf.classifier": ["ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.training"],
    "ebm_tf.defense": [
        "ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training",
        "ebm_tf.classifier",
    ],
    "ebm_tf.evaluation": [
        "ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training",
        "ebm_tf.classifier",
    ],
    "ebm_tf.zoo": ["ebm_tf.internal", "ebm_tf.training", "ebm_tf.classifier"],
    "ebm_tf.testing": [
        "ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training",
        "ebm_tf.classifier",
    ],
    "ebm_tf": [
        "ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training",
        "ebm_tf.classifier", "ebm_tf.defense", "ebm_tf.evaluation", "ebm_tf.zoo",
    ],
    "export": [
        "ebm_tf.internal", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training", "ebm_tf.classifier",
        "ebm_tf.defense",
    ],
    "bench": [
        "ebm_tf.internal", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training", "ebm_tf.classifier",
        "ebm_tf.defense", "export",
    ],
    "tests": [
        "ebm_tf.internal", "ebm_tf.data", "ebm_tf.models", "ebm_tf.mcmc", "ebm_tf.training",
        "ebm_tf.classifier", "ebm_tf.defense", "ebm_tf.evaluation", "ebm_tf.zoo", "ebm_tf.testing",
        "ebm_tf", "export",
    ],
}

# What a package's tests may import besides its library's layers: the fixtures of ebm_tf.testing
# (tiny trained runs) sit above most packages, and only tests use them.
TEST_ONLY_LAYERS = {
    "ebm_tf.evaluation": ["ebm_tf.testing"],
    "ebm_tf.zoo": ["ebm_tf.evaluation", "ebm_tf.testing", "ebm_tf.data"],
}
