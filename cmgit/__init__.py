"""cmgit: sealed child-protection case records in git."""

__version__ = "0.3.0"
