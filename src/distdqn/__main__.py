import sys

from distdqn.cli import main

sys.exit(main())
