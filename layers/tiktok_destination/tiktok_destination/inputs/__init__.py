"""What arrives in S3 and how it is read: formats, readers, exports in parts, ranges.

``formats`` (extension, bytes to text), ``rows`` (the stream both readers give),
``csv_reader`` with ``csv_lines`` and ``csv_damage``, ``parquet_reader``, ``readers`` (a
local file by its format), ``exports`` (files written in parts), ``ranges`` (a large file
cut into ranges that Map children validate side by side).
"""
