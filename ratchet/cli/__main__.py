"""`python -m ratchet.cli` is the same as `ratchet`."""

from ratchet.cli.app import main

main()
