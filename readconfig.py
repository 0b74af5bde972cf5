#!/usr/bin/env python3
"""Merge a zoo model's pipeline.config with an override and hparams: see tfodkit/config.py."""

from tfodkit.config import main

if __name__ == "__main__":
    raise SystemExit(main())
