"""`python -m parity.web install`: ONNX Runtime Web for the ort_web backends, ahead of the first run."""

import sys

from parity.web import main

sys.exit(main())
