"""Registry: members (jurisdictions), facilities, products and their regulatory status."""
