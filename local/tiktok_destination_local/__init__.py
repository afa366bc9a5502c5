"""Local tooling for tiktok-destination: never built into the Lambda layer.

The CLI (``tiktok-destination``), the moto runner that executes the deployed state machine
and handlers locally (``runner``, ``state_dir``), the TikTok API emulator (``emulator``) and
the demo's sample files (``samples/``). It imports the runtime package ``tiktok_destination``;
the runtime package never imports this one. tests/unit/test_layer_contents.py holds that
line: the layer directory lists only runtime modules, and none of them imports this package.
"""
