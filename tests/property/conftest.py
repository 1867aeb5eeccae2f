"""Hypothesis profiles for the property tests.

HYPOTHESIS_PROFILE=ci (default) keeps CI fast; HYPOTHESIS_PROFILE=fuzz is for hunting bypasses.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("fuzz", max_examples=50_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
