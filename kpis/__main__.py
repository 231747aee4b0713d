"""``python -m kpis``: the carekpi command line."""

from kpis.cli import main

main()
