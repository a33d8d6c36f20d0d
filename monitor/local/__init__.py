"""What runs on one machine only, never in production: the embedded Tansu broker (``broker``;
the binary, its command line and quirks in ``tansu``, the readiness probe in ``readiness``,
``cbc-monitor broker`` in ``foreground``), its TLS relay (``tls_relay``), child processes for
workers and tools (``processes``) and the demo (``demo``). A layer contract keeps the production
packages from importing it.
"""
