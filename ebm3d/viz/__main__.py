"""``python -m ebm3d.viz <file-or-run> [--png out.png]``: the same as ``ebm3d view``."""
import sys

from .view import view_main

sys.exit(view_main())
