"""Entry point: `python -m pipeline.submission validate|submit|status` (see cli.py)."""
import sys

from pipeline.submission.cli import main

sys.exit(main())
