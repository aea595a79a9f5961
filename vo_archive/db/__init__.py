"""The archive's database: embedded cluster, engines and schema migrations."""
