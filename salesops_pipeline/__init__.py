"""Daily sales operations of a phone-sales company, orchestrated with Dagster."""
