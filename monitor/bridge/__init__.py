"""The paging bridge: keeps Alertmanager (or a PagerDuty Events v2 endpoint) in step with the
alert topic.

Pure parts: ``episodes`` (the open-episode state rebuilt from the topic), ``alertmanager`` and
``pagerduty`` (what to post for each change), ``pseudonym`` (patient references for labels).
I/O: ``runner`` (Kafka consumers, start-up rebuild and sync, keep-alive), ``offsets`` (where
the rebuild collects from, commits), ``poster`` (HTTP posts with retry), ``options``,
``metrics`` (Prometheus metrics and their /metrics, /healthz server) and ``command`` (the CLI).
docs/paging.md is the operator guide.
"""
