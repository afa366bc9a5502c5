"""Offline events: per-row rules, grouping rows into events, planning and sending batches."""
