"""bonecast: bone health under aromatase inhibitors.

Decision support for professionals, not a medical device. The public API of each layer is
re-exported from its package (:mod:`bonecast.simulation`).
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "bonecast is decision support for health professionals, not a medical device. Simulated "
    "results carry model and parameter uncertainty; they do not replace clinical judgement."
)
