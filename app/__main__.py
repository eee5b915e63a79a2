"""`python -m app`: the same command line as `missive`."""

from app.cli import main

main()
