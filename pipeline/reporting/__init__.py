"""Reporting: the table layouts shared by the aggregate and plots stages (tables)."""
