"""`python -m harness` is the same as the `unlearn-harness` console script."""

from harness.cli import main

if __name__ == "__main__":
    main()
