"""The EST front door (RFC 7030): a second door into the same provision use case as POST /provision."""
