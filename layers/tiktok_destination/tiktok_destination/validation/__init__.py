"""The validate step: check every row, write hashes, rejects and dropped values.

``headers`` (which columns a template reads), ``audience_rows`` and ``event_rows`` (the two
row loops), ``row_loop`` (what they share: counts, the rejects file), ``result`` and
``file_rules`` (the counts, and the rules over a whole file). The files are read by
``inputs``.
"""
