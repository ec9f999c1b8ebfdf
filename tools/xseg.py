"""`facejax xseg` from a checkout, without installing: python tools/xseg.py --help."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from facejax import cli  # noqa: E402

if __name__ == "__main__":
    cli.main([sys.argv[0], "xseg", *sys.argv[1:]])
