"""ADQL queries: vetted by a tokenizer, parsed and translated to PostgreSQL/pgSphere."""
