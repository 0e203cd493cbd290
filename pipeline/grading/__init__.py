"""Grading: answer extraction and comparison (answers), and a judge's second opinion from a chat
endpoint (judge)."""
