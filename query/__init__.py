"""SQL layer (the Athena role): DuckDB over the Parquet lake, with one view per table."""
