"""Reporting: the main table's pivots, and the variant order and labels that the aggregate and
plots stages share (tables); the figures of the table and of the demo's training (plots)."""
