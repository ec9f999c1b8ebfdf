"""`python -m facejax COMMAND ...`: the facejax command (facejax/cli.py)."""

from facejax import cli

cli.main()
