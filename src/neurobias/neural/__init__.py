"""Neural data: recordings, the V1 predictive model, and the targets regularisers learn from.

Declared here (:mod:`neurobias.registry`; nothing in this module imports torch or numpy):

- the neural targets, ``results/similarity/{study}/{kind}.npy``: Li et al. 2019's S_neural
  (``model``, ``data``, ``shuffle``, ``vgg``), Federer et al. 2020's teacher RSMs (``rsm_*``),
  Safarani et al. 2021's response targets (``responses_*``); builders in :mod:`.targets`;
- the recording sources, each converted to the one format of :mod:`.recording`: ``simulated``
  (:mod:`.simulated_v1`), ``cadena2019`` (:mod:`.cadena`), a user's ``file`` in that format
  (:mod:`.recording_file`) and a Neurodata Without Borders ``nwb`` file (:mod:`.nwb`).
"""

from __future__ import annotations

from ..registry import RecordingSourceSpec, TargetSpec, declare

# -- targets ---------------------------------------------------------------------------------------
declare(TargetSpec, name="model", builder="neurobias.neural.targets:model_similarity", product="similarity",
        reads=("v1_model",), on_device=True,
        doc="Li 2019 Neural(model): similarities of the V1 model's predicted responses")
declare(TargetSpec, name="data", builder="neurobias.neural.targets:data_similarity", product="similarity",
        doc="Li 2019 Neural(data): similarities of the trial-averaged recorded responses")
declare(TargetSpec, name="shuffle", builder="neurobias.neural.targets:shuffled_similarity", product="similarity",
        options=("shuffle_seed",), reads=("target:model",),
        doc="Li 2019 Shuffle: the model matrix with image identities permuted")
declare(TargetSpec, name="vgg", builder="neurobias.neural.targets:vgg_similarity", product="similarity",
        options=("shuffle_seed", "vgg_weights"), reads=("vgg_weights",), on_device=True,
        doc="Li 2019 VGG control: similarities of ImageNet VGG-19 conv3_1 features")
_TEACHER_OPTIONS = ("rsm_metric", "shuffle_seed")
declare(TargetSpec, name="rsm_v1", builder="neurobias.neural.targets:rsm_v1", product="rsm",
        options=_TEACHER_OPTIONS, doc="Federer 2020: the V1 RSM")
declare(TargetSpec, name="rsm_v1_shuffle", builder="neurobias.neural.targets:rsm_v1_shuffle", product="rsm",
        options=_TEACHER_OPTIONS, doc="Federer 2020: the V1 RSM with image identities shuffled")
declare(TargetSpec, name="rsm_gaussian_v1", builder="neurobias.neural.targets:rsm_gaussian_v1", product="rsm",
        options=_TEACHER_OPTIONS, doc="Federer 2020: Gaussian responses with each neuron's V1 mean and SD")
declare(TargetSpec, name="rsm_gaussian_other", builder="neurobias.neural.targets:rsm_gaussian_other",
        product="rsm", options=(*_TEACHER_OPTIONS, "gaussian_other"),
        doc="Federer 2020: Gaussian responses with one non-V1 mean and SD")
declare(TargetSpec, name="responses_model", builder="neurobias.neural.targets:model_responses",
        product="responses", reads=("v1_model",), on_device=True, diagnosed=False,
        doc="Safarani 2021: the single-task V1 model's predicted responses")
declare(TargetSpec, name="responses_shuffle", builder="neurobias.neural.targets:shuffled_responses",
        product="responses", options=("shuffle_seed",), reads=("target:responses_model",), diagnosed=False,
        doc="Safarani 2021: the V1 model's predictions with image identities permuted")
# Its own rule (oracle_targets): a readout fitted on a trained oracle network's frozen core.
declare(TargetSpec, name="responses_oracle", builder="neurobias.jobs:oracle_targets", product="responses",
        from_trained_model=True, implies=("responses_model",), on_device=True, diagnosed=False,
        doc="Safarani 2021 MTL-oracle: a readout of a trained oracle's core fitted to the V1 model's predictions")

# -- recording sources -----------------------------------------------------------------------------
_V1_MODEL = {"$ref": "#/$defs/v1_model", "default": {}}

declare(RecordingSourceSpec, name="simulated", builder="neurobias.neural.simulated_v1:simulated_recording",
        doc="a simulated V1 population recorded on synthetic stimuli (the demo's positive control)",
        schema={"required": ["seed", "n_images", "repeats"], "properties": {
            "seed": {"$ref": "#/$defs/seed"},
            "n_images": {"type": "integer", "minimum": 20},
            "image_size": {"type": "integer", "minimum": 16, "maximum": 256, "default": 32},
            "repeats": {"type": "integer", "minimum": 2},
            "test_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.2},
            "missing_fraction": {"type": "number", "minimum": 0, "maximum": 0.9, "default": 0.0},
            "stimulus_dataset_seed": {"$ref": "#/$defs/seed", "description": "seed of the stimulus images (default: seed)"},
            "population": {"$ref": "#/$defs/population", "default": {}},
            "v1_model": _V1_MODEL}})

declare(RecordingSourceSpec, name="cadena2019", builder="neurobias.neural.cadena:recording_from_config",
        download="cadena",
        doc="Cadena et al. 2019 monkey V1 (GIN; CC BY-NC-ND 4.0, downloaded at run time, never redistributed)",
        schema={"properties": {
            "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$",
                       "description": "pinned sha256 of the downloaded zip; the pickle inside is only unpickled when it "
                                      "matches (null: refuse and print the actual value to verify and pin)"},
            "manual_path": {"type": ["string", "null"]},
            "url": {"type": "string"},
            "train_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.8},
            "v1_model": _V1_MODEL}})

_SHA256 = {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$",
           "description": "optional sha256 of the file (lower-case hex); when given, the file is hashed and compared "
                          "before it is parsed"}

declare(RecordingSourceSpec, name="file", builder="neurobias.neural.recording_file:recording_source",
        local_file="path",
        doc="your own recording: an .npz file in the documented recording format (docs/data.md)",
        schema={"required": ["path"], "properties": {
            "path": {"type": "string", "minLength": 1, "description": "path of the .npz file"},
            "sha256": _SHA256,
            "v1_model": _V1_MODEL}})

declare(RecordingSourceSpec, name="nwb", builder="neurobias.neural.nwb:recording_source", local_file="path",
        doc="a Neurodata Without Borders (NWB 2) file read with pynwb: stimulus images and a trials table with "
            "trial-wise responses (docs/data.md)",
        schema={"required": ["path", "mapping"], "properties": {
            "path": {"type": "string", "minLength": 1, "description": "path of the .nwb file"},
            "sha256": _SHA256,
            "mapping": {
                "type": "object", "additionalProperties": False,
                "required": ["stimulus", "image_index_column", "response_column"],
                "properties": {
                    "stimulus": {"type": "string", "minLength": 1,
                                 "description": "name of the Images / ImageSeries / IndexSeries in nwbfile.stimulus or "
                                                "nwbfile.stimulus_template"},
                    "trials": {"type": "string", "minLength": 1, "default": "trials",
                               "description": "the trials table: 'trials' (nwbfile.trials) or the name of a "
                                              "TimeIntervals table in nwbfile.intervals"},
                    "image_index_column": {"type": "string", "minLength": 1,
                                           "description": "trials column: index of the image shown"},
                    "response_column": {"type": "string", "minLength": 1,
                                        "description": "trials column: responses of the K units, 2-D [n_trials, K] or "
                                                       "ragged; NaN = not recorded"},
                    "tier_column": {"type": ["string", "null"], "minLength": 1,
                                    "description": "optional trials column of 'train' / 'test'; without it "
                                                   "train_fraction splits by image index"}}},
            "train_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.8,
                               "description": "without mapping.tier_column: the first int(N * train_fraction) images "
                                              "(by index) are train"},
            "v1_model": _V1_MODEL}})
