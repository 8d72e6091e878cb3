"""``python -m sgdscope`` runs the command line."""

from ._entry import main

main()
