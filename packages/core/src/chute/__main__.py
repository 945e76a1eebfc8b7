"""``python -m chute`` runs the command line."""

from chute.cli import main

main()
