"""Shared plumbing of the IVOA Data Access Layer services (DALI 1.1)."""
