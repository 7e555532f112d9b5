import sys

from spade_lens.cli import main

sys.exit(main())
