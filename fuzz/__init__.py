"""Fuzzing vzvnc's parsers with atheris: see README.md."""
