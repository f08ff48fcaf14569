import sys

from llmprep.cli import main

sys.exit(main())
