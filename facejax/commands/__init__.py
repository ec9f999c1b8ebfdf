"""The subcommands of `facejax` (facejax/cli.py): each module defines its absl flags and
`main(argv)`; `tools/NAME.py` runs `facejax NAME` from a checkout."""
