"""`python -m authorgen` is the same as the `authorgen` command."""

from authorgen.cli import main

if __name__ == "__main__":
    main()
