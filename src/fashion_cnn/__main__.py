import sys

from fashion_cnn.cli import main

sys.exit(main())
