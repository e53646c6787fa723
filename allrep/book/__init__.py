"""The book: pages, tables, plots."""
