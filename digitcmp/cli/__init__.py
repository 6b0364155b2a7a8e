"""The ``digitcmp`` command line: each command parses its flags, asks the library for a plan, runs it and renders
the result (app: the application and what commands share; options: shared and generated options)."""

from . import infer, study, train  # noqa: F401  (each module registers its commands)
from .app import app

__all__ = ["app"]
