"""Shim so that older pip versions can do editable installs; all metadata lives in setup.cfg."""
from setuptools import setup

setup()
