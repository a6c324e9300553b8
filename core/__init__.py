"""Pure-Python core of SkyReels Studio: project model, edits, persistence, render queue, media I/O.

Never imports PySide6, torch, diffusers, ``app`` or ``models`` (checked by import-linter).
"""
