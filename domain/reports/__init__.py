"""Admin reports: stock with the conservation totals, sales, outstanding invoices, sync health (read-only)."""
