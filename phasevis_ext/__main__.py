"""`python -m phasevis_ext ...` and `torchrun -m phasevis_ext ...`: the `phasevis` command."""
import sys

from .cli import main

sys.exit(main())
