"""TFOD Toolkit: fine-tune TensorFlow Object Detection API (TF2) zoo models.

Modules that touch TensorFlow import :mod:`tfodkit.compat` first; the rest
(zoo catalogue, errors, CLI helpers) import without TensorFlow so that
launchers such as runtask.sh stay fast.
"""

__version__ = "0.1.0"
