"""The clinical core, pure: no Kafka, no asyncio, no I/O, and no import of any other part of the
project (a layer contract in the test suite keeps it so).

``analytes`` and ``units`` say what is measured and in what unit, ``grading`` decides a CTCAE
grade, ``model`` is the canonical ``CBCResult``, ``history`` a patient's bounded history and
episodes, ``context`` treatments and temperatures, ``delta`` the suspect-specimen checks,
``detector`` turns a new result into alerts, and ``alert`` is what the monitor publishes.
"""
