"""Weak supervision: labeling functions (lfs), a Dawid-Skene label model fitted by EM, LF statistics."""
