"""Unit tests of the BRPO library (anytime.brpo): hand-computed cases first, then properties."""
