"""Neural-network building blocks, PyTorch-shaped: ``Module``, layers, losses, ``init`` and
``functional``."""

from . import functional, init, utils
from .architecture import describe, rebuild, register
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    BCEWithLogitsLoss,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    Flatten,
    GELU,
    Identity,
    L1Loss,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ModuleList,
    MSELoss,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .transformer import MultiheadAttention, RMSNorm, TransformerEncoderLayer
from . import inference

Sequential.inference_forward = staticmethod(inference.forward)
from .module import Module, Parameter, saved_modes

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "Identity",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "MultiheadAttention",
    "NLLLoss",
    "Parameter",
    "RMSNorm",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TransformerEncoderLayer",
    "describe",
    "functional",
    "init",
    "rebuild",
    "register",
    "saved_modes",
    "utils",
]
