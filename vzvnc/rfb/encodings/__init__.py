"""rfb/encodings"""
