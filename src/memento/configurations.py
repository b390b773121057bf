"""memento-ml 1.2 import path for configuration matrices."""

from memento.matrix.configs import Config, Configurations, generate_configurations

__all__ = ["Config", "Configurations", "generate_configurations"]
