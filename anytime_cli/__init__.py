"""The `anytime` command line. Arguments are parsed before heavy libraries are imported."""
