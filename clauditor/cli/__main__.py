"""``python -m clauditor.cli``: the ``clauditor`` command."""

from clauditor.cli import main

if __name__ == "__main__":
    main()
