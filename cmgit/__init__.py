"""cmgit: sealed child-protection case records in git."""
