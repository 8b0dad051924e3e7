import sys

from plyr_appview.cli import main

sys.exit(main())
