"""An example neurobias plugin: the declarations (no torch here; the code is imported by the jobs
that use it).

- regulariser ``similarity_mse``: the squared difference between one layer's image similarities and
  a neural similarity target (Li et al.'s targets, without their arctanh and layer weights);
- architecture ``tiny_cnn``: three 3x3 convolutions with named taps;
- evaluation ``salt_pepper``: accuracy when a fraction of the pixels is set to black or white.
"""

from neurobias.registry import ArchitectureSpec, EvaluationSpec, RegulariserSpec, declare

declare(RegulariserSpec, name="similarity_mse", builder="neurobias_example_plugin.regulariser:build",
        doc="mean squared difference between one layer's image similarities and the target's",
        fields={"mse_weight": {"type": "number", "minimum": 0, "default": 1.0,
                               "description": "similarity_mse: weight of the term"}},
        defaults={"stimulus_batch_size": 16, "neural_batchnorm": "update"},
        required=("target", "layer"), accepts=("similarity",), layers_field="layer", neural_pass=True,
        penalty_term="similarity MSE")

declare(ArchitectureSpec, name="tiny_cnn", builder="neurobias_example_plugin.network:tiny_cnn",
        doc="three 3x3 convolutions (BatchNorm, ReLU, 2x2 pooling after the first two), global pooling, a linear head",
        taps=("conv1", "conv2", "conv3"),
        options={"width": {"$ref": "#/$defs/positive_int", "description": "channels of the first stage (64: the standard network)"}},
        diagnostic_taps=("conv2",), ev_layers=("conv1", "conv2"))

declare(EvaluationSpec, name="salt_pepper", builder="neurobias_example_plugin.evaluation:salt_pepper_accuracy",
        doc="accuracy when a fraction of the pixels is set to 0 or 1 (salt-and-pepper noise)",
        generic=True, metrics={"accuracy": "higher"},
        schema={"type": "object", "additionalProperties": False, "required": ["fractions"], "properties": {
            "fractions": {"type": "array", "minItems": 1, "items": {"type": "number", "minimum": 0, "maximum": 1}},
            "seed": {"type": "integer", "minimum": 0, "default": 0},
            "n_images": {"type": "integer", "minimum": 1}}})
