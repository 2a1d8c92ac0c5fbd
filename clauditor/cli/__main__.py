"""``python -m clauditor.cli``: the ``clauditor`` command."""

from clauditor.cli import main

main()
