import sys

from salesops_pipeline.cli.main import main

sys.exit(main())
