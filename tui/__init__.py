"""The Textual terminal UI (time scrubber, process tree, detail pane). Only this stage imports textual.

It reads recordings through ``osrewind.queries`` and holds no SQL of its own.
"""
