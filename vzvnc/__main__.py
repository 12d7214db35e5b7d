"""``python -m vzvnc``: same as the ``vzvnc`` console script."""

import sys

from vzvnc.cli import main

sys.exit(main())
