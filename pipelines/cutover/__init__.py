"""Cutover: blue/green releases for Python web services."""

__version__ = "0.1.0"
