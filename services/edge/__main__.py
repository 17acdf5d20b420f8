"""`python -m switchboard.edge` runs the edge."""

from .server import main

main()
