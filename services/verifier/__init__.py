"""Verifier: answer extraction, the format rule and grading with math-verify. Torch-free."""
