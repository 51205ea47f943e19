"""Shared test settings: keep torch and numpy single-threaded so tests are fast and repeatable on 2 cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
