"""``python -m digitcmp`` runs the command line."""

from .cli import app

app(prog_name="digitcmp")
