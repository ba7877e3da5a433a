import sys

from raftplane.cli import main

sys.exit(main())
