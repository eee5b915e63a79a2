"""Issues: the digest written as data, rendered into email, previewed and archived."""
