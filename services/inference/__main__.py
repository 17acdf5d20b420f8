"""`python -m switchboard.inference` runs the inference service."""

from switchboard.inference.server import main

if __name__ == "__main__":
    main()
