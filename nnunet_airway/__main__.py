import sys

from nnunet_airway.cli import main

sys.exit(main())
