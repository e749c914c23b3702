"""One module per dataset of the course experiments (classification and tables)."""
