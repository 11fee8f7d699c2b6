"""The `gauge` command line (thin: parse flags, call the layers below)."""
