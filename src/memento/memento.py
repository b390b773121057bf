"""memento-ml 1.2 import path: ``from memento.memento import Memento``."""

from memento.runner import Memento

__all__ = ["Memento"]
