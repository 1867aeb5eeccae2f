"""Hypothesis profiles for the property tests.

``HYPOTHESIS_PROFILE`` picks one (tests/conftest.py makes ``ci`` the default):

* ``ci``: a few hundred examples per property, in the normal test run. Failures hypothesis finds
  are kept in ``.hypothesis/`` and tried first on the next run on this machine.
* ``fuzz``: the long hunt, run by ``scripts/fuzz``. Its example database is ``.hypothesis-fuzz/``
  (gitignored, kept between runs), so every failure a fuzz run ever found is replayed first by
  the next one. ``AUTHSVC_FUZZ_EXAMPLES`` overrides the example count (scripts/fuzz sets it for
  time-boxed rounds).
* ``mutation``: few examples and a fixed seed, so ``scripts/mutation`` judges every mutant with
  the same inputs (a mutant must not survive or die by luck).

A failure found in any profile also goes into tests/property/corpus/ (see its README.md), which
every run replays whatever the database holds.
"""

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parent.parent.parent
FUZZ_DATABASE = ROOT / ".hypothesis-fuzz"

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("AUTHSVC_FUZZ_EXAMPLES", "50000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(str(FUZZ_DATABASE)),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "mutation",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
