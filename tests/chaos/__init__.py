"""The chaos suite: every process of a stack killed in turn under mixed load, then every
accepted job accounted for (issue 9)."""
