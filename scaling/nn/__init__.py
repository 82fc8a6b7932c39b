"""The torch layer: registries' builders (norms, activations, convs), layers, one module class per
block type, and :func:`build_model`. Importing it registers every builder (layers, then blocks)."""

from scaling.nn import blocks, layers  # noqa: F401  (registration: layers first, then blocks)
from scaling.nn.build import ScalingNet, build_model, init_weights
from scaling.nn.layers import build_activation_layer, build_conv_layer, build_norm_layer

__all__ = ["ScalingNet", "build_activation_layer", "build_conv_layer", "build_model",
           "build_norm_layer", "init_weights"]
