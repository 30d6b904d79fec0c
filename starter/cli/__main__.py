"""`python -m starter.cli`: the same as the `leadloop` console script."""

from starter.cli import main

main()
