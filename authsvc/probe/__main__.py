"""``python -m authsvc.probe``: ``authsvc probe`` without installing anything (standard library only)."""

import sys

from authsvc.probe.command import main

sys.exit(main())
