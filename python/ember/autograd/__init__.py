"""Reverse-mode automatic differentiation: Function, the backward engine, grad mode, gradcheck."""

from .engine import enable_grad, inference_mode, is_grad_enabled, no_grad
from .function import Context, Function, Variable
from .gradcheck import GradcheckError, gradcheck

__all__ = ["Context", "Function", "Variable", "GradcheckError", "enable_grad", "gradcheck", "inference_mode", "is_grad_enabled",
           "no_grad"]
