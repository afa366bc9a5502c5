"""A run from start to report: preflight, the run record, leases, reports, workflow actions."""
