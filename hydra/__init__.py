"""Hydra: computer vision for near-real-time data quality monitoring."""

__version__ = "0.1.0"
