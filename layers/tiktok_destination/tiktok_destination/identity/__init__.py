"""Identifiers as TikTok matches them: which column feeds which field, normalization, hashing."""
