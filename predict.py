#!/usr/bin/env python3
"""Draw labelled boxes on images with an exported model, and write JSON: see tfodkit/predict.py."""

from tfodkit.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
