"""`python -m chatgate` is the `chatgate` command."""

from chatgate.cli import main

if __name__ == "__main__":
    main()
