import sys

from ratd.main import main

sys.exit(main())
