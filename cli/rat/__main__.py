import sys

from rat.main import main

sys.exit(main())
