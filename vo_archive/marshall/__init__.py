"""The Marshall joined to the archive: name keys, cross-match, refresh (issue 19)."""
