"""`python -m streams …` is the same as the `passerelle` command."""

from streams.cli import main

raise SystemExit(main())
