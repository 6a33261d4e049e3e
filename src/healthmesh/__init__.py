"""HealthMesh: an open platform for cross-border medical resource integration."""

__version__ = "0.1.0"
