"""Grading: one answer's verdict (answers) from its extraction (extraction) and comparison
(comparison), many answers under time limits (worker_pool), and a judge's second opinion from a
chat endpoint (judge)."""
