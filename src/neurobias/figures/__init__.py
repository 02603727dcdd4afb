"""Paper figures.

:data:`FIGURES` is the one extension point for new paper figures: it maps a
figure name (as used in the workflow's output paths,
``figures/{study}/{figure}.pdf`` and ``.png``) to a plotting function.

Every registered function has the signature::

    plot(summary, comparisons, *, title, note, out_pdf, out_png, **options) -> None

where ``summary`` comes from :func:`neurobias.stats.summarise` and
``comparisons`` from :func:`neurobias.stats.compare_to_baseline` (both already
filtered to what the figure shows), ``note`` is a caption printed under the
axes, and both output files are written atomically.  To add a figure, write a
module in this package with such a function (plus a lower-level ``draw_*(ax,
...)`` that returns the axes, for tests) and add one entry below.
"""

from __future__ import annotations

from collections.abc import Callable

from .noise_robustness import (
    ARM_ORDER,
    ARM_STYLE,
    arm_style,
    draw_noise_robustness,
    order_arms,
    plot_noise_robustness,
)
from .adversarial import plot_adversarial  # noqa: E402  (after noise_robustness: it reuses its styles)
from .federer import plot_federer_fig6, plot_federer_fig7  # noqa: E402
from .brain_likeness import plot_dapello_fig1, plot_geirhos_fig3  # noqa: E402
from .safarani import (  # noqa: E402
    plot_safarani_fig2,
    plot_safarani_fig3a,
    plot_safarani_fig3b,
    plot_safarani_fig3c,
)

#: figure name -> plotting function (see module docstring for the contract).
FIGURES: dict[str, Callable[..., None]] = {
    "noise_robustness": plot_noise_robustness,
    # takes tidy per-model rows (one per arm x seed x metric), not a summary
    "adversarial": plot_adversarial,
    # Federer 2020: take the learning-curve summary and tests plus the study's arm roles
    "federer_fig6": plot_federer_fig6,
    "federer_fig7": plot_federer_fig7,
    # brain-likeness vs robustness: the model table / tidy manipulation rows
    "dapello_fig1": plot_dapello_fig1,
    "geirhos_fig3": plot_geirhos_fig3,
    # Safarani 2021: robustness scores with bootstrap intervals (3A, 3B), the model table and its
    # regression (3C), example images with predictions (2)
    "safarani_fig2": plot_safarani_fig2,
    "safarani_fig3a": plot_safarani_fig3a,
    "safarani_fig3b": plot_safarani_fig3b,
    "safarani_fig3c": plot_safarani_fig3c,
}

__all__ = [
    "FIGURES",
    "ARM_ORDER",
    "ARM_STYLE",
    "arm_style",
    "order_arms",
    "draw_noise_robustness",
    "plot_noise_robustness",
]
