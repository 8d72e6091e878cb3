"""``python -m sgdscope`` runs the command line."""

from .cli import main

main()
