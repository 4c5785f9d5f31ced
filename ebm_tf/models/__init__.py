"""Energy networks, generators and classifiers of ebm-tf, built by name.

See `ebm_tf.models.registry` for the API; the architectures live in `ebm_sngan`, `biggan_ebm`,
`generators`, `wide_resnet`, `small` and `mlp`.
"""
from ebm_tf.models.registry import (CLASSIFIER_NAMES, EBM_NAMES, GENERATOR_NAMES,
                                    build_classifier, build_ebm, build_generator, energy_fn,
                                    feature_model, generator_latent_dim, sample_latents)

__all__ = [
    "CLASSIFIER_NAMES", "EBM_NAMES", "GENERATOR_NAMES", "build_classifier", "build_ebm",
    "build_generator", "energy_fn", "feature_model", "generator_latent_dim", "sample_latents",
]
