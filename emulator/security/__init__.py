"""Who is who: the emulator's CA and device certificates (`pki`), device keys (`keys`), SigV4
verification (`sigv4`) and manufacturer test identities (`idevids`)."""
