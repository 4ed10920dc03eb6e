"""Sales reporting over the company's SQLite sales database (questions Q3.1 and Q3.2)."""
