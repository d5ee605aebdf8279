"""`python -m transformer_lens verify MODEL`: see transformer_lens.cli."""

from transformer_lens.cli import main

raise SystemExit(main())
