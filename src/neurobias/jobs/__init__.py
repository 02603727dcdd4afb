"""The workflow's one glue layer: one function per rule, named after the rule.

Every rule in ``workflow/rules/*.smk`` runs ``workflow/scripts/run.py``, which calls :func:`run`:
it looks the rule up in :data:`JOBS` and calls its function with keyword arguments named after
the rule's ``input``, ``output`` and ``params`` entries (paths as strings, lists of paths as
lists, config slices as dicts). Everything a job uses from the config reaches it through the
rule's ``params``, so Snakemake's params trigger reruns exactly the jobs a config change affects.
The one exception is ``progress`` (tqdm bars in the logs), which changes no result and is passed
to the functions that take it.

So everything a rule does is reachable from tests without Snakemake: call the function with the
same keywords. Each job writes its outputs atomically (temporary name, then rename) and a
``provenance.json`` beside them.

Modules, one per stage of the workflow (every job function is re-exported here):

:mod:`.runner`
    :func:`run`, :func:`job_arguments`, :func:`job_name`, :func:`job_environment` (the rule's
    log and threads; a finished job script exits at once).
:mod:`.atomic`
    :func:`~.atomic.write_csv`, :func:`~.atomic.write_json`, :func:`~.atomic.save_npy`: the
    atomic writers every job uses.
:mod:`.data`
    ``download``, ``download_vgg19_weights``, ``make_dataset``, ``make_recording`` (and
    ``simulate_recording``), ``fit_v1_model``.
:mod:`.targets`
    ``similarity``, ``similarity_diagnostics``, ``oracle_targets``.
:mod:`.training`
    ``train``, ``train_pack``.
:mod:`.evaluation`
    ``evaluate_gaussian_noise``, ``evaluate_adversarial``, ``evaluate_corruptions``,
    ``evaluate`` (a plugin's generic evaluation), ``brain_likeness`` (scoring every model).
:mod:`.analysis`
    ``stats``, ``stats_learning_curves``, ``stats_corruptions``, ``brain_likeness_analysis``
    (its tables: :mod:`neurobias.stats.brain_likeness`) and the ``figure_*`` jobs
    (``figure_evaluation``: a generic evaluation's).

Importing the package imports no torch: each job imports what it needs when it runs, so the
statistics, figure and numpy-only target jobs start without it. To add a rule, write its function
in the module of its stage and add it to :data:`JOBS`.
"""

from __future__ import annotations

from .analysis import (brain_likeness_analysis, figure_adversarial, figure_arms, figure_dapello, figure_evaluation,
                       figure_federer,
                       figure_geirhos, figure_noise_robustness, figure_safarani_fig2, figure_safarani_fig3,
                       safarani_arms_table, stats, stats_corruptions, stats_learning_curves, tidy_arm)
from .data import download, download_vgg19_weights, fit_v1_model, make_dataset, make_recording, simulate_recording
from .evaluation import brain_likeness, evaluate, evaluate_adversarial, evaluate_corruptions, evaluate_gaussian_noise
from .runner import job_arguments, job_environment, job_name, run
from .targets import oracle_targets, similarity, similarity_diagnostics
from .training import train, train_pack

# Rule name -> job function: the rules' one hop into the package (see :func:`run`).
JOBS = {f.__name__: f for f in (
    download, download_vgg19_weights, make_dataset, make_recording, fit_v1_model, similarity,
    similarity_diagnostics, oracle_targets, train, train_pack, evaluate_gaussian_noise, evaluate_adversarial,
    evaluate_corruptions, stats, stats_learning_curves, stats_corruptions, figure_noise_robustness,
    figure_adversarial, figure_federer, figure_safarani_fig3, figure_safarani_fig2, brain_likeness,
    brain_likeness_analysis, figure_dapello, figure_geirhos, evaluate, figure_evaluation)}

__all__ = ["JOBS", "job_arguments", "job_environment", "job_name", "run", "simulate_recording", "tidy_arm",
           "safarani_arms_table", "figure_arms", *JOBS]
