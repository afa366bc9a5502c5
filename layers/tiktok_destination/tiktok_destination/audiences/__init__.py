"""Custom audiences: find or create, diff against the last sync, guard removals, send, commit."""
