"""The version of sparktf (one place; the package root and the stage fingerprints read it)."""

__version__ = "0.1.0"
