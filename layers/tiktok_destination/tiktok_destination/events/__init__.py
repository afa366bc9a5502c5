"""Offline events: per-row rules, grouping rows into events, planning and sending batches.

- ``rules``: one input row checked and normalized (event names, identifiers, time, currency,
  value, price, quantity); the ``event/track`` body.
- ``build``: the rows of one order (one event key) merged into ONE event.
- ``plan``: validated rows grouped into events and cut into batches; the rejected share.
- ``send``: one batch sent to ``event/track``, bisected around events TikTok rejects.
"""
