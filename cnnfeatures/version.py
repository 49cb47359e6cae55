"""The version of cnnfeatures: written here only (the package metadata reads it)."""

__version__ = "0.1.0.dev0"
