"""Neural-network building blocks; ``ember.nn.functional`` holds the functional forms."""

from . import functional

__all__ = ["functional"]
