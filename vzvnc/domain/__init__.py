"""Domains: containers booted straight through the kernel, each with its controller and a
restartable console server."""
