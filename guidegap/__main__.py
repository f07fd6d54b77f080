import sys

from guidegap.cli.main import main

sys.exit(main())
