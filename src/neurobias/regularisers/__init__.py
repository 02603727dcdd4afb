"""Regularisers: one interface, several kinds.

A regulariser is an ``nn.Module`` (its trainable parameters, like Li's layer weights, are trained
with the network and saved in its checkpoint) with

    taps: tuple[str, ...]                       # layers it reads
    stimulus_batch(generator) -> index tensor   # which stimulus images this step uses (or None)
    loss(stimulus_features) -> scalar tensor    # the penalty, given the taps' activations
    log() -> dict[str, float]                   # values worth a column in history.csv

The training loop adds ``weight * loss`` to the cross-entropy. Extension point: register a
constructor in :data:`REGULARISERS` under the name the config's ``arms.<arm>.regulariser`` uses.
"""

from __future__ import annotations

from .similarity import SimilarityRegulariser

REGULARISERS = {"similarity": SimilarityRegulariser}

__all__ = ["REGULARISERS", "SimilarityRegulariser"]
