"""The Qt layer of SkyReels Studio: windows, widgets, Qt item models, undo stack, workers.

The only package that imports PySide6. Never imports torch/diffusers at module level and reaches
``models`` only through objects that ``main.py`` passes in.
"""
