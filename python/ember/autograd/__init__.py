"""Reverse-mode automatic differentiation: Function, the backward engine, grad mode, gradcheck."""

from .engine import enable_grad, is_grad_enabled, no_grad
from .function import Context, Function, Variable
from .gradcheck import GradcheckError, gradcheck

__all__ = ["Context", "Function", "Variable", "GradcheckError", "enable_grad", "gradcheck", "is_grad_enabled", "no_grad"]
