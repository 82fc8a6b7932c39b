"""The torch layer: registries' builders (norms, activations, convs), layers, one module class per
block type (named by its record, :mod:`scaling.ir.blocks`), and :func:`build_model`. Importing it
registers the norm, activation and conv builders (scaling.nn.layers)."""

from scaling.nn import layers  # noqa: F401  (registers norms, activations, convs)
from scaling.nn.build import FeatureNet, ScalingNet, build_model, init_weights
from scaling.nn.deploy import deploy
from scaling.nn.layers import build_activation_layer, build_conv_layer, build_norm_layer

__all__ = ["FeatureNet", "ScalingNet", "build_activation_layer", "build_conv_layer",
           "build_model", "build_norm_layer", "deploy", "init_weights"]
