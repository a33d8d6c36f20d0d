"""Kafka as production uses it, shared by the worker and the command-line tools: the clients
(``clients``), TLS and SASL settings (``security``) and topic administration (``topics``).
Nothing here runs only on one machine: the embedded broker lives in ``monitor.local``.
"""
