"""The model zoo: family tables (torch-free specs), ``list_models`` / ``get_spec`` /
``create_model``, and converters of torchvision and timm weights (:mod:`scaling.zoo.weights`).
``python -m scaling.zoo`` lists the models."""

from scaling.zoo.models import create_model, get_spec, list_models, model_table

__all__ = ["create_model", "get_spec", "list_models", "model_table"]
